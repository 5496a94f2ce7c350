package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// Calls over TLS share one HTTP/2 connection instead of one each.
func TestClientReusesOneConnection(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("call over %s, want HTTP/2", r.Proto)
		}
		_, _ = w.Write([]byte(`{"node_id":"n1"}`))
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	tlsConfig := srv.Client().Transport.(*http.Transport).TLSClientConfig
	c, err := NewClient(strings.TrimPrefix(srv.URL, "https://"), tlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 20 {
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NodeID != "n1" {
			t.Fatalf("got node %q, want n1", info.NodeID)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("20 calls opened %d connections, want 1", got)
	}
}
