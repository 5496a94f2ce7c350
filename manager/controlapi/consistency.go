package controlapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// Read-your-writes. Every answer carries the index of the cluster state it
// saw (X-Shoal-Index); a client sends the highest one back, and a manager
// answers a read only once it has applied that index. A manager that is not
// the leader also makes sure, once per leader term, that it has caught up
// with the leader's state (a read index), so a restarted manager does not
// answer from a half-replayed log; without a leader it refuses to answer.

// headerIndex carries a store index: in answers the index the answer saw, in
// requests the highest index the client has seen.
const headerIndex = api.HeaderIndex

// DefaultReadWait bounds how long a read waits for this manager to apply an
// index before it answers 503.
const DefaultReadWait = 5 * time.Second

// DefaultLeaderWait bounds how long a call waits for an election to end:
// raft elects a leader within about a second.
const DefaultLeaderWait = 2 * time.Second

// apiError is an answer a check in front of a handler gives instead of it.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func (e *apiError) write(w http.ResponseWriter) { writeError(w, e.code, "%s", e.msg) }

// readBarrier remembers the leader term whose state this manager has caught
// up with. One caller at a time catches up (the others find it done); the
// lock is a channel so that a caller waits for it no longer than its context.
type readBarrier struct {
	lock chan struct{}
	gen  uint64 // Leadership.Gen of the last barrier that passed; 0 for none
}

func newReadBarrier() readBarrier { return readBarrier{lock: make(chan struct{}, 1)} }

// requestedIndex is the index the client asks this manager to have applied.
func requestedIndex(r *http.Request) (uint64, error) {
	v := r.Header.Get(headerIndex)
	if v == "" {
		return 0, nil
	}
	i, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, &apiError{http.StatusBadRequest, fmt.Sprintf("bad %s header %q: want a log index", headerIndex, v)}
	}
	return i, nil
}

// catchUp makes this manager's store at least as new as everything
// acknowledged before the call and as the index the caller asks for.
func (s *Server) catchUp(ctx context.Context, r *http.Request) error {
	want, err := requestedIndex(r)
	if err != nil {
		return err
	}
	// Bounded however long the caller is willing to wait.
	ctx, cancel := context.WithTimeout(ctx, s.leaderWait+2*s.readWait)
	defer cancel()
	l, err := s.waitLeader(ctx)
	if err != nil {
		return &apiError{http.StatusServiceUnavailable, "no leader: this manager cannot reach a quorum of managers, " +
			"so it cannot tell whether its cluster state is current; try again, or ask another manager"}
	}
	if err := s.termBarrier(ctx, l); err != nil {
		return err
	}
	if want == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.readWait)
	defer cancel()
	if err := s.cfg.Store.WaitIndex(wctx, want); err != nil {
		return &apiError{http.StatusServiceUnavailable, fmt.Sprintf(
			"this manager has applied the cluster state up to index %d, not yet index %d of an earlier answer, after %s: "+
				"it may be cut off from the leader; try again, or ask another manager", s.cfg.Store.Index(), want, s.readWait)}
	}
	return nil
}

// waitLeader returns the known leader, waiting up to LeaderWait for an
// election to end.
func (s *Server) waitLeader(ctx context.Context) (Leadership, error) {
	ctx, cancel := context.WithTimeout(ctx, s.leaderWait)
	defer cancel()
	for {
		l := s.cfg.Raft.LeaderWatch()
		if l.ID != "" {
			return l, nil
		}
		select {
		case <-l.Changed:
		case <-ctx.Done():
			return l, ctx.Err()
		}
	}
}

// termBarrier catches up with the leader's state once per leader term: the
// leader waits for raft to apply everything committed before its term, a
// follower for its store to reach the leader's read index.
func (s *Server) termBarrier(ctx context.Context, l Leadership) error {
	select {
	case s.barrier.lock <- struct{}{}:
		defer func() { <-s.barrier.lock }()
	case <-ctx.Done():
		return &apiError{http.StatusServiceUnavailable, "this manager is still catching up with the leader " + l.ID + "; try again shortly"}
	}
	if s.barrier.gen == l.Gen {
		return nil
	}
	if l.ID == s.cfg.NodeID {
		if err := s.cfg.Raft.Barrier(ctx); err != nil {
			return &apiError{http.StatusServiceUnavailable, fmt.Sprintf("this manager leads but cannot commit: %v; try again", err)}
		}
		s.barrier.gen = l.Gen
		return nil
	}
	index, err := s.leaderReadIndex(ctx, l)
	if err != nil {
		return &apiError{http.StatusServiceUnavailable, fmt.Sprintf(
			"cannot check this manager's cluster state with the leader %s: %v; try again, or ask another manager", l.ID, err)}
	}
	wctx, cancel := context.WithTimeout(ctx, s.readWait)
	defer cancel()
	if err := s.cfg.Store.WaitIndex(wctx, index); err != nil {
		return &apiError{http.StatusServiceUnavailable, fmt.Sprintf(
			"this manager is catching up with the leader: it has applied index %d of %d after %s; try again shortly",
			s.cfg.Store.Index(), index, s.readWait)}
	}
	s.barrier.gen = l.Gen
	return nil
}

// leaderReadIndex asks the leader for its read index.
func (s *Server) leaderReadIndex(ctx context.Context, l Leadership) (uint64, error) {
	addr := s.waitAPIAddr(ctx, l.ID, s.readWait)
	if addr == "" {
		return 0, fmt.Errorf("no known API address after %s", s.readWait)
	}
	ctx, cancel := context.WithTimeout(ctx, s.readWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/raft/read-index", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set(headerForwarded, s.cfg.NodeID)
	resp, err := s.fwd.tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out api.ReadIndex
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("read index answer (%s): %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", resp.Status, out.Message)
	}
	return out.Index, nil
}

// readIndex answers the leader's read index: its applied index once it has
// applied everything committed before its term. A follower that has applied
// it has seen every write acknowledged before the call.
func (s *Server) readIndex(w http.ResponseWriter, r *http.Request) {
	l := s.cfg.Raft.LeaderWatch()
	if l.ID != s.cfg.NodeID {
		writeError(w, http.StatusServiceUnavailable, "not the leader (the leader is %q)", l.ID)
		return
	}
	if err := s.termBarrier(r.Context(), l); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			ae.write(w)
			return
		}
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, api.ReadIndex{Index: s.cfg.Store.Index()})
}

// indexWriter sets X-Shoal-Index to the store's applied index when the
// answer starts, unless the handler (a forwarded answer) set it.
type indexWriter struct {
	http.ResponseWriter
	st      *store.Store
	written bool
}

func (w *indexWriter) WriteHeader(code int) {
	if !w.written {
		w.written = true
		if w.Header().Get(headerIndex) == "" {
			w.Header().Set(headerIndex, strconv.FormatUint(w.st.Index(), 10))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *indexWriter) Write(b []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *indexWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *indexWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
