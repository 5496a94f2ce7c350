package controlapi_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/admission"
	"github.com/shoal-dev/shoal/manager/ca"
)

// joinAs joins a node named host with token and returns its answer and,
// on success, its certificate with the key it was made for.
func joinAs(t *testing.T, m *manager, token, host string, endpoints api.Endpoints) (answer, *tls.Certificate) {
	t.Helper()
	keyPEM, err := ca.NewKey()
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	csr, err := ca.NewCSR(keyPEM)
	if err != nil {
		t.Fatalf("NewCSR: %v", err)
	}
	a := m.as(nil).do("POST", "/v1/join", api.JoinRequest{
		Token: token, CSRPEM: string(csr), Addr: "10.0.0.9", Endpoints: endpoints,
		Description: api.NodeDescription{Hostname: host},
	})
	if a.code != http.StatusOK {
		return a, nil
	}
	var resp api.JoinResponse
	a.decode(t, &resp)
	cert, err := tls.X509KeyPair([]byte(resp.CertPEM), keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	return a, &cert
}

func TestJoinRateLimit(t *testing.T) {
	f, m := leaderFixture(t)
	tok := f.cluster().WorkerToken
	gossip := api.Endpoints{Gossip: "10.0.0.9:7946"}
	for i := range admission.DefaultJoinBurst {
		a, _ := joinAs(t, m, tok, fmt.Sprintf("burst-%d", i), gossip)
		want(t, a, http.StatusOK)
	}
	before := f.nodeCount()
	a, _ := joinAs(t, m, tok, "over", gossip)
	want(t, a, http.StatusTooManyRequests)
	if got := a.header.Get("Retry-After"); got != "1" {
		t.Errorf("got Retry-After %q, want 1", got)
	}
	if !strings.Contains(a.message(), "too many joins") {
		t.Errorf("got message %q, want it to say too many joins", a.message())
	}
	if got := f.nodeCount(); got != before {
		t.Errorf("got %d nodes after a limited join, want %d", got, before)
	}
	f.clk.Advance(time.Second)
	a, _ = joinAs(t, m, tok, "over", gossip)
	want(t, a, http.StatusOK)
}

func TestJoinNameOfDownNode(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("old", "reused", api.RoleWorker, api.NodeStateDown)
	a, _ := joinAs(t, m, f.cluster().WorkerToken, "reused", api.Endpoints{Gossip: "10.0.0.9:7946"})
	want(t, a, http.StatusOK)
	a, _ = joinAs(t, m, f.cluster().WorkerToken, "reused", api.Endpoints{Gossip: "10.0.0.9:7946"})
	want(t, a, http.StatusConflict)
}

// TestRevokedCertificates checks that a demoted or removed node's
// certificates go on the deny list in the same write, and that manager
// calls with a revoked manager certificate are refused.
func TestRevokedCertificates(t *testing.T) {
	f, m := leaderFixture(t)
	m.gossip.set("m1", true)
	a, mcert := joinAs(t, m, f.cluster().ManagerToken, "m2host",
		api.Endpoints{Gossip: "10.0.0.9:7946", API: "10.0.0.9:2377", Raft: "10.0.0.9:2378"})
	want(t, a, http.StatusOK)
	id, err := ca.IdentityOf(mcert.Leaf)
	if err != nil {
		t.Fatalf("IdentityOf: %v", err)
	}
	serial := admission.Serial(mcert.Leaf)
	want(t, m.as(mcert).do("GET", "/v1/nodes", nil), http.StatusOK)
	if n := f.node(id.NodeID); len(n.Certs) != 1 || n.Certs[0].Serial != serial {
		t.Fatalf("got certs %+v on the joined node, want its one certificate %s", n.Certs, serial)
	}

	// The leader must see m2 as a reachable voter to let it go.
	m.raft.mu.Lock()
	m.raft.voters = append(m.raft.voters, id.NodeID)
	m.raft.mu.Unlock()
	m.gossip.set(id.NodeID, true)
	want(t, m.admin().do("POST", "/v1/nodes/"+id.NodeID+"/demote", nil), http.StatusOK)
	if !revoked(f, serial) {
		t.Errorf("demoted manager's certificate %s not on the deny list %+v", serial, f.cluster().RevokedCerts)
	}
	if !f.adm.IsRevoked(serial) {
		t.Errorf("IsRevoked(%s) = false after demotion", serial)
	}
	a = want(t, m.as(mcert).do("GET", "/v1/nodes", nil), http.StatusForbidden)
	if !strings.Contains(a.message(), "worker") {
		t.Errorf("got message %q, want the caller seen as a worker", a.message())
	}

	// A worker removed: all of its certificates.
	a, wcert := joinAs(t, m, f.cluster().WorkerToken, "w9", api.Endpoints{Gossip: "10.0.0.9:7946"})
	want(t, a, http.StatusOK)
	wid, _ := ca.IdentityOf(wcert.Leaf)
	want(t, m.admin().do("DELETE", "/v1/nodes/"+wid.NodeID+"?force=1", nil), http.StatusNoContent)
	if !revoked(f, admission.Serial(wcert.Leaf)) {
		t.Errorf("removed worker's certificate not on the deny list %+v", f.cluster().RevokedCerts)
	}
}

func revoked(f *fixture, serial string) bool {
	return slices.ContainsFunc(f.cluster().RevokedCerts, func(r api.RevokedCert) bool { return r.Serial == serial })
}
