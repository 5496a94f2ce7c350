package httpserve

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/manager/ca"
)

// serve starts srv on a loopback port (TLS when srv.TLSConfig is set) and
// returns its address.
func serve(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if srv.TLSConfig != nil {
			_ = srv.ServeTLS(ln, "", "")
		} else {
			_ = srv.Serve(ln)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// poll calls f until it returns nil or 10 s pass.
func poll(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlowRequestsEnd: a client that sends its headers or its body too
// slowly is cut off, and the handler's read fails instead of waiting.
func TestSlowRequestsEnd(t *testing.T) {
	tests := []struct {
		name string
		send string // what the client sends before going silent
	}{
		{"headers never finished", "POST / HTTP/1.1\r\nHost: x\r\n"},
		{"body never finished", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var readErr atomic.Value
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := io.ReadAll(r.Body); err != nil {
					readErr.Store(err)
				}
			})
			addr := serve(t, newServer(h, 100*time.Millisecond, 300*time.Millisecond, time.Second, time.Second))
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
			// The server closes the connection (after a 400 or nothing).
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("got %v, want the server to close the connection", err)
			}
			if strings.Contains(tt.send, "Content-Length") {
				poll(t, "handler read error", func() error {
					if readErr.Load() == nil {
						return errors.New("the handler's body read has not failed")
					}
					return nil
				})
			}
		})
	}
}

// TestStreamOutlivesDeadlines: a response that lifts the deadlines keeps
// streaming past the server's read and write timeouts, and its request's
// context stays alive.
func TestStreamOutlivesDeadlines(t *testing.T) {
	const lines = 8
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		beforeWrite := Stream(w)
		for i := range lines {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			beforeWrite()
			fmt.Fprintf(w, "line %d\n", i)
			http.NewResponseController(w).Flush()
		}
	})
	// Reads end after 200 ms and writes after 300 ms; the stream lasts 800 ms.
	addr := serve(t, newServer(h, 100*time.Millisecond, 200*time.Millisecond, 300*time.Millisecond, time.Second))
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		n++
	}
	if n != lines || sc.Err() != nil {
		t.Errorf("got %d lines, %v; want %d", n, sc.Err(), lines)
	}
}

// TestAnonymousCap: connections without a client certificate are capped;
// one over the cap gets 503, node certificates are never refused, and a
// closed connection frees its slot.
func TestAnonymousCap(t *testing.T) {
	now := time.Now()
	root, err := ca.NewRootCA("cluster", now)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(id ca.Identity) tls.Certificate {
		keyPEM, _ := ca.NewKey()
		csr, _ := ca.NewCSR(keyPEM)
		certPEM, err := root.Sign(csr, id, []net.IP{net.ParseIP("127.0.0.1")}, now, 0)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	server := issue(ca.Identity{NodeID: "m1", Role: "manager", ClusterID: "cluster"})
	node := issue(ca.Identity{NodeID: "w1", Role: "worker", ClusterID: "cluster"})

	srv := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	srv.TLSConfig = ca.ServerTLS(root.Pool(), server)
	anon := NewAnonymous(2, nil)
	anon.Install(srv)
	addr := serve(t, srv)

	// Each client holds one kept-alive connection.
	client := func(cert *tls.Certificate, h2 bool) *http.Client {
		conf := ca.ClientTLS(root.Pool(), cert)
		tr := &http.Transport{TLSClientConfig: conf, MaxConnsPerHost: 1, ForceAttemptHTTP2: h2}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client) int {
		t.Helper()
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	a1, a2, a3 := client(nil, false), client(nil, true), client(nil, false)
	if got := []int{get(a1), get(a2)}; got[0] != 200 || got[1] != 200 {
		t.Fatalf("first two anonymous connections: got %v, want 200s", got)
	}
	if got := get(a3); got != http.StatusServiceUnavailable {
		t.Errorf("third anonymous connection: got %d, want 503", got)
	}
	for _, h2 := range []bool{false, true} {
		if got := get(client(&node, h2)); got != 200 {
			t.Errorf("node certificate (h2 %t) over the anonymous cap: got %d, want 200", h2, got)
		}
	}
	if n := anon.Open(); n != 2 {
		t.Errorf("got %d anonymous connections counted, want 2", n)
	}
	a1.Transport.(*http.Transport).CloseIdleConnections()
	poll(t, "slot freed", func() error {
		if n := anon.Open(); n != 1 {
			return fmt.Errorf("%d anonymous connections counted, want 1", n)
		}
		return nil
	})
	if got := get(client(nil, false)); got != 200 {
		t.Errorf("anonymous connection after one closed: got %d, want 200", got)
	}
}
