package controlapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/manager/ca"
	"github.com/shoal-dev/shoal/store"
)

// Forwarding: a follower sends a leader-only call to the leader it knows
// and drops it the moment raft sees another leader (Leadership.Changed),
// instead of waiting on a connection to a deposed or cut-off leader. A call
// the old leader cannot have acted on (not yet sent, or a read) goes to the
// new leader; a write that was sent gets 503 "outcome unknown" because only
// the caller can tell whether to retry it.

const (
	// forwardDialTimeout bounds connecting to the leader: managers share a LAN.
	forwardDialTimeout = time.Second
	// staleContact: a follower that has not heard from the leader for this
	// long (raft's leader beats every 50-100 ms) holds a write until it hears from
	// it again or another leader is elected, so writes are not sent into a
	// cut link.
	staleContact = 150 * time.Millisecond
	// contactPoll is how often a held call checks the leader's contact.
	contactPoll = 20 * time.Millisecond
	// retryPause spaces the resends of a call to a leader that refuses connections.
	retryPause = 50 * time.Millisecond
	// forwardBodyLimit is the largest body forwarded, as decode reads.
	forwardBodyLimit = 1 << 20
	// forwardAnswerLimit bounds a leader's answer held in memory.
	forwardAnswerLimit = 64 << 20
)

// forwarder holds the connections to the leader.
type forwarder struct {
	tr *http.Transport
	// gen is the leader generation the pooled connections lead to.
	gen uint64
}

func newForwarder(tlsCfg *tls.Config) *forwarder {
	return &forwarder{tr: &http.Transport{
		TLSClientConfig:     tlsCfg,
		DialContext:         (&net.Dialer{Timeout: forwardDialTimeout, KeepAlive: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: forwardDialTimeout,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}}
}

// errLeaderChanged ends an attempt when raft sees another leader.
var errLeaderChanged = errors.New("the leader changed")

// apiAddr is the API endpoint of node id, "" if unknown.
func (s *Server) apiAddr(id string) string {
	var addr string
	s.cfg.Store.View(func(tx store.ReadTx) {
		if n := tx.Node(id); n != nil {
			addr = n.Endpoints.API
		}
	})
	return addr
}

// waitAPIAddr waits up to wait for the API endpoint of node id to be known
// here: a manager that is replaying its log after a restart learns the
// leader's ID from raft before it has the leader's node record.
func (s *Server) waitAPIAddr(ctx context.Context, id string, wait time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if addr := s.apiAddr(id); addr != "" {
			return addr
		}
		if s.cfg.Store.WaitIndex(ctx, s.cfg.Store.Index()+1) != nil {
			return ""
		}
	}
}

// forwardToLeader sends a leader-only call to the leader and relays its
// answer; h serves the call if this manager becomes the leader meanwhile.
func (s *Server) forwardToLeader(w http.ResponseWriter, r *http.Request, caller ca.Identity, h http.HandlerFunc) {
	if r.Header.Get(headerForwarded) != "" {
		writeError(w, http.StatusServiceUnavailable, "no leader: this manager lost leadership while the call was forwarded; try again")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, forwardBodyLimit+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	if len(body) > forwardBodyLimit {
		writeError(w, http.StatusRequestEntityTooLarge, "body larger than 1 MiB")
		return
	}
	ctx := r.Context()
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead
	start := time.Now()
	for {
		l, err := s.waitLeader(ctx)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "no leader: this manager cannot reach a quorum of managers, so the cluster refuses writes here until it can")
			return
		}
		if l.ID == s.cfg.NodeID {
			r.Body = io.NopCloser(bytes.NewReader(body))
			h(w, r)
			return
		}
		addr := s.waitAPIAddr(ctx, l.ID, s.leaderWait)
		if addr == "" {
			if s.cfg.Raft.LeaderWatch().Gen != l.Gen {
				continue
			}
			writeError(w, http.StatusServiceUnavailable, "leader %s has no known API address yet; try again", l.ID)
			return
		}
		if !safe && !s.heardFromLeader(ctx, l) {
			if ctx.Err() != nil {
				writeError(w, http.StatusServiceUnavailable, "no leader: the leader %s has not been heard from for %s and no other is elected; this manager may be cut off from the others", l.ID, time.Since(start).Round(time.Millisecond))
				return
			}
			continue // another leader
		}
		resp, sent, err := s.send(ctx, l, addr, r, body, caller)
		if err == nil {
			s.relay(w, r, resp)
			return
		}
		changed := errors.Is(err, errLeaderChanged)
		if sent && !safe {
			if changed {
				writeError(w, http.StatusServiceUnavailable, "outcome unknown: the leader changed while the call was in flight to %s; "+
					"it may or may not have been applied: check, then retry", l.ID)
				return
			}
			writeError(w, http.StatusBadGateway, "outcome unknown: no answer from the leader %s at %s (%v); it may or may not have been applied: check, then retry", l.ID, addr, err)
			return
		}
		if ctx.Err() != nil {
			writeError(w, http.StatusServiceUnavailable, "cannot reach the leader %s at %s within %s (%v): if this manager is cut off from the others it has no quorum and refuses writes", l.ID, addr, time.Since(start).Round(time.Millisecond), err)
			return
		}
		s.log.Debug("forward: resending", "leader", l.ID, "sent", sent, "err", err)
		if !changed {
			// Same leader, connection refused or reset: resend after a
			// pause or as soon as another leader is elected.
			waitChange(ctx, l, retryPause)
		}
	}
}

// waitChange waits for another leader, up to pause; it reports whether the
// leader changed.
func waitChange(ctx context.Context, l Leadership, pause time.Duration) bool {
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-l.Changed:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// heardFromLeader waits until this follower has heard from leader l
// recently; it reports false when another leader is elected or ctx ends.
func (s *Server) heardFromLeader(ctx context.Context, l Leadership) bool {
	if s.cfg.Raft.SinceContact() < staleContact {
		return true
	}
	tick, stop := s.cfg.Clock.NewTicker(contactPoll)
	defer stop()
	for {
		select {
		case <-l.Changed:
			return false
		case <-ctx.Done():
			return false
		case <-tick:
			if s.cfg.Raft.SinceContact() < staleContact {
				return true
			}
		}
	}
}

// send makes one attempt; sent says the leader may have received the whole call.
func (s *Server) send(ctx context.Context, l Leadership, addr string, r *http.Request, body []byte, caller ca.Identity) (*forwardAnswer, bool, error) {
	s.fwdMu.Lock()
	if s.fwd.gen != l.Gen {
		// Connections to a deposed leader are no use any more.
		s.fwd.tr.CloseIdleConnections()
		s.fwd.gen = l.Gen
	}
	s.fwdMu.Unlock()

	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-l.Changed:
			cancel(errLeaderChanged)
		case <-actx.Done():
		}
	}()
	var wrote atomic.Bool // set by the transport's writer
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }}
	u := *r.URL
	u.Scheme, u.Host = "https", addr
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(actx, trace), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	for _, k := range []string{"Content-Type", headerIndex} {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(headerForwarded, s.cfg.NodeID)
	// The leader limits joins by their source.
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		xff := host
		if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
			xff = prior + ", " + host
		}
		req.Header.Set("X-Forwarded-For", xff)
	}
	if caller.Role != "" {
		callerJSON, _ := json.Marshal(caller)
		req.Header.Set(headerCaller, string(callerJSON))
	}
	hresp, err := s.fwd.tr.RoundTrip(req)
	sent := wrote.Load()
	if err == nil {
		defer hresp.Body.Close()
		var data []byte
		data, err = io.ReadAll(io.LimitReader(hresp.Body, forwardAnswerLimit))
		if err == nil {
			return &forwardAnswer{code: hresp.StatusCode, header: hresp.Header, body: data}, true, nil
		}
		sent = true
	}
	if errors.Is(context.Cause(actx), errLeaderChanged) {
		err = fmt.Errorf("%w: %w", errLeaderChanged, err)
	}
	return nil, sent, err
}

// forwardAnswer is the leader's answer, read whole.
type forwardAnswer struct {
	code   int
	header http.Header
	body   []byte
}

// relay writes the leader's answer. Before that it waits, a bounded time,
// for this manager to apply the write, so the caller's next read here sees it
// even without sending X-Shoal-Index.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, a *forwardAnswer) {
	if v := a.header.Get(headerIndex); v != "" && a.code/100 == 2 {
		if index, err := strconv.ParseUint(v, 10, 64); err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), s.readWait)
			if err := s.cfg.Store.WaitIndex(ctx, index); err != nil {
				s.log.Warn("forwarded write not applied here in time", "index", index, "err", err)
			}
			cancel()
		}
	}
	for _, k := range []string{"Content-Type", "Retry-After", headerIndex} {
		if v := a.header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(a.code)
	_, _ = w.Write(a.body)
}
