package ca

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

type handshakeResult struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

// handshake runs one TLS handshake over loopback TCP. After a successful handshake the
// server writes a byte and the client reads it, so the client also sees a rejection the
// server sends after the client's last flight (TLS 1.3).
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second) // guards against a hang, not a timing assertion

	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		sc := tls.Server(c, serverCfg)
		if res.serverErr = sc.Handshake(); res.serverErr == nil {
			res.server = sc.ConnectionState()
			_, res.serverErr = sc.Write([]byte{1})
		}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	cc := tls.Client(c, clientCfg)
	if res.clientErr = cc.Handshake(); res.clientErr == nil {
		res.client = cc.ConnectionState()
		_, res.clientErr = cc.Read(make([]byte, 1))
	}
	<-done
	return res
}

// withForcedCert makes a client present cert even if it does not match the CAs the server
// asks for (crypto/tls would otherwise quietly send no certificate).
func withForcedCert(cfg *tls.Config, cert tls.Certificate) *tls.Config {
	cfg = cfg.Clone()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

func TestTLS(t *testing.T) {
	now := time.Now() // crypto/tls verifies against the wall clock
	root := newRoot(t, "c1", now)
	foreign := newRoot(t, "c2", now)
	pool := root.Pool()

	mgrID := Identity{NodeID: "m1", Role: RoleManager, ClusterID: "c1"}
	wrkID := Identity{NodeID: "w1", Role: RoleWorker, ClusterID: "c1"}
	_, mgr := issue(t, root, mgrID, now)
	mgr2ID := Identity{NodeID: "m2", Role: RoleManager, ClusterID: "c1"}
	_, mgr2 := issue(t, root, mgr2ID, now)
	_, wrk := issue(t, root, wrkID, now)
	_, alien := issue(t, foreign, Identity{NodeID: "m1", Role: RoleManager, ClusterID: "c1"}, now)

	tests := []struct {
		name         string
		server       *tls.Config
		client       *tls.Config
		wantServerOK bool
		wantClientOK bool
		wantPeer     *Identity // identity the server sees; nil means none
		wantErr      string    // in the rejecting side's error
	}{
		{"server: client without cert (join)", ServerTLS(pool, mgr), ClientTLS(pool, nil), true, true, nil, ""},
		{"server: client with cert", ServerTLS(pool, mgr), ClientTLS(pool, &wrk), true, true, &wrkID, ""},
		{"server: client cert from another root", ServerTLS(pool, mgr), withForcedCert(ClientTLS(pool, nil), alien), false, false, nil, "unknown authority"},
		{"server: foreign cert not offered is no identity", ServerTLS(pool, mgr), ClientTLS(pool, &alien), true, true, nil, ""},
		{"client: server cert from another root", ServerTLS(pool, alien), ClientTLS(pool, nil), false, false, nil, "unknown authority"},
		{"client: server role checked", ServerTLS(pool, wrk), ClientTLS(pool, nil, RoleManager), false, false, nil, `has role "worker"`},
		{"fetch: unverified", ServerTLS(pool, alien), InsecureFetchTLS(), true, true, nil, ""},
		{"mutual: managers", MutualTLS(pool, mgr, RoleManager), MutualTLS(pool, mgr2, RoleManager), true, true, &mgr2ID, ""},
		{"mutual: no roles given accepts worker", MutualTLS(pool, mgr), MutualTLS(pool, wrk), true, true, &wrkID, ""},
		{"mutual: listener refuses worker", MutualTLS(pool, mgr, RoleManager), MutualTLS(pool, wrk), false, false, nil, `has role "worker"`},
		{"mutual: dialer refuses worker", MutualTLS(pool, wrk), MutualTLS(pool, mgr, RoleManager), false, false, nil, `has role "worker"`},
		{"mutual: listener refuses client from another root", MutualTLS(pool, mgr), withForcedCert(MutualTLS(pool, mgr), alien), false, false, nil, "unknown authority"},
		{"mutual: listener refuses client without cert", MutualTLS(pool, mgr), ClientTLS(pool, nil), false, false, nil, "provide a certificate"},
		{"mutual: dialer refuses server from another root", MutualTLS(pool, alien), MutualTLS(pool, mgr), false, false, nil, "unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := handshake(t, tt.server, tt.client)
			if tt.wantErr != "" && !strings.Contains(fmt.Sprint(res.serverErr, res.clientErr), tt.wantErr) {
				t.Errorf("got errors %v / %v, want one containing %q", res.serverErr, res.clientErr, tt.wantErr)
			}
			if got := res.serverErr == nil; got != tt.wantServerOK {
				t.Errorf("server ok: got %v (%v), want %v", got, res.serverErr, tt.wantServerOK)
			}
			if got := res.clientErr == nil; got != tt.wantClientOK {
				t.Errorf("client ok: got %v (%v), want %v", got, res.clientErr, tt.wantClientOK)
			}
			if res.serverErr != nil {
				return
			}
			id, ok := PeerIdentity(&res.server)
			switch {
			case tt.wantPeer == nil && ok:
				t.Errorf("PeerIdentity: got %+v, want none", id)
			case tt.wantPeer != nil && (!ok || id != *tt.wantPeer):
				t.Errorf("PeerIdentity: got %+v %v, want %+v", id, ok, *tt.wantPeer)
			}
		})
	}
}

func TestPeerIdentityNone(t *testing.T) {
	if _, ok := PeerIdentity(nil); ok {
		t.Errorf("PeerIdentity(nil): got ok")
	}
	if _, ok := PeerIdentity(&tls.ConnectionState{}); ok {
		t.Errorf("PeerIdentity(empty): got ok")
	}
}
