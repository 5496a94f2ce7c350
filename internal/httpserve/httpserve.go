package httpserve

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Timeouts of every listener. A client must send its request headers within
// ReadHeader and the whole request, body included, within Read; the response
// must be written within Write; a kept-alive connection is closed after Idle
// without a request. Handlers that answer for longer lift them (Stream).
const (
	ReadHeader = 5 * time.Second
	Read       = 30 * time.Second
	Write      = 60 * time.Second
	Idle       = 90 * time.Second
)

// DefaultMaxAnonymous is how many connections without a client certificate
// the TLS API port holds at once: joining nodes and CA fetches need few.
const DefaultMaxAnonymous = 128

// New returns a server for h with the timeouts above.
func New(h http.Handler) *http.Server {
	return newServer(h, ReadHeader, Read, Write, Idle)
}

func newServer(h http.Handler, header, read, write, idle time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: header,
		ReadTimeout:       read,
		WriteTimeout:      write,
		IdleTimeout:       idle,
	}
}

// Anonymous caps the TLS connections of a server whose client presented no
// certificate. A connection is counted from its first request until it
// closes; one over the cap gets 503 and is closed.
type Anonymous struct {
	max     int
	refused prometheus.Counter

	mu    sync.Mutex
	n     int
	conns map[net.Conn]*connInfo
}

type connInfo struct {
	classified, counted, over bool
}

type connKey struct{}

// NewAnonymous caps anonymous connections at max, counting refusals in a
// counter registered with reg (nil registers nothing).
func NewAnonymous(max int, reg prometheus.Registerer) *Anonymous {
	a := &Anonymous{
		max:   max,
		conns: map[net.Conn]*connInfo{},
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_api_anonymous_connections_refused_total",
			Help: "Connections to the API port without a client certificate refused because the cap was reached.",
		}),
	}
	if reg != nil {
		reg.MustRegister(a.refused)
	}
	return a
}

// Install hooks a into srv, whose handler it wraps.
func (a *Anonymous) Install(srv *http.Server) {
	next := srv.Handler
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		info := &connInfo{}
		a.mu.Lock()
		a.conns[c] = info
		a.mu.Unlock()
		return context.WithValue(ctx, connKey{}, info)
	}
	srv.ConnState = a.connState
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info, _ := r.Context().Value(connKey{}).(*connInfo); info != nil && a.isOver(info) {
			refuse(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

const refusal = `{"message":"too many connections without a client certificate on this port; try again later"}` + "\n"

// refuse answers 503 and closes the connection at once. On HTTP/1 it
// hijacks the connection: after a handler returns, the server would first
// read what is left of a small body, which a slow client sends slowly.
func refuse(w http.ResponseWriter) {
	if conn, buf, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.SetWriteDeadline(time.Now().Add(ReadHeader))
		_, _ = fmt.Fprintf(buf, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(refusal), refusal)
		_ = buf.Flush()
		_ = conn.Close()
		return
	}
	// HTTP/2: Connection: close makes the server send GOAWAY.
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(refusal))
}

func (a *Anonymous) isOver(info *connInfo) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return info.over
}

// connState classifies a connection at its first request (the TLS
// handshake is done by then, for HTTP/1 and HTTP/2 alike) and releases its
// slot when it closes.
func (a *Anonymous) connState(c net.Conn, st http.ConnState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	info := a.conns[c]
	if info == nil {
		return
	}
	switch st {
	case http.StateActive:
		if info.classified {
			return
		}
		info.classified = true
		tc, ok := c.(*tls.Conn)
		if !ok || len(tc.ConnectionState().PeerCertificates) > 0 {
			return
		}
		if a.n >= a.max {
			info.over = true
			a.refused.Inc()
			return
		}
		a.n++
		info.counted = true
	case http.StateClosed, http.StateHijacked:
		if info.counted {
			a.n--
		}
		delete(a.conns, c)
	}
}

// Open is how many anonymous connections are counted now.
func (a *Anonymous) Open() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// Stream lifts the server's read deadline for a response that lasts longer
// than Write (a log stream, a long poll) and returns a function to call
// before each write: it gives that write another Write to complete, so a
// client that stops reading is still dropped.
func Stream(w http.ResponseWriter) (beforeWrite func()) {
	rc := http.NewResponseController(w)
	// The request is read; a read deadline left in place would cancel the
	// request's context on HTTP/1 when it fires.
	_ = rc.SetReadDeadline(time.Time{})
	extend := func() { _ = rc.SetWriteDeadline(time.Now().Add(Write)) }
	extend()
	return extend
}

// Extend gives a response that may take up to d (a long poll) that long
// plus Write to be written, and lifts the read deadline.
func Extend(w http.ResponseWriter, d time.Duration) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(d + Write))
}
