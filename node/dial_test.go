package node

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

// Calls to one manager share a client (and so its connection) until the
// certificate changes.
func TestDialReusesClient(t *testing.T) {
	n := &Node{pool: x509.NewCertPool(), cert: &tls.Certificate{}}
	dial := func(addr string) any {
		t.Helper()
		c, err := n.dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := dial("10.0.0.1:2377")
	if dial("10.0.0.1:2377") != a {
		t.Errorf("a second dial of the same manager made a new client")
	}
	if dial("10.0.0.2:2377") == a {
		t.Errorf("another manager got the same client")
	}
	n.closeClients()
	if dial("10.0.0.1:2377") == a {
		t.Errorf("after closeClients (a new certificate) the old client came back")
	}
}
