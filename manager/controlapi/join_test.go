package controlapi_test

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/ca"
)

func TestJoin(t *testing.T) {
	f, m := leaderFixture(t)
	c := f.cluster()
	foreign, err := ca.NewRootCA("other", f.clk.Now())
	if err != nil {
		t.Fatalf("NewRootCA: %v", err)
	}
	workerReq := func(token string) api.JoinRequest {
		return api.JoinRequest{
			Token:       token,
			CSRPEM:      newCSR(t),
			Addr:        "10.0.0.7",
			Endpoints:   api.Endpoints{Gossip: "10.0.0.7:7946"},
			Description: api.NodeDescription{Hostname: "joiner"},
		}
	}
	managerReq := workerReq(c.ManagerToken)
	managerReq.Description.Hostname = "joiner-m"
	managerReq.Endpoints.API = "10.0.0.7:2377"
	managerReq.Endpoints.Raft = "10.0.0.7:2378"
	badAddr := workerReq(c.WorkerToken)
	badAddr.Addr = "not-an-ip"
	noAPI := workerReq(c.ManagerToken) // a manager must say where it serves
	badCSR := workerReq(c.WorkerToken)
	badCSR.CSRPEM = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
	sameName := workerReq(c.WorkerToken)
	noName := workerReq(c.WorkerToken)
	noName.Description.Hostname = " "
	huge := []byte(`{"token":"` + strings.Repeat("a", 1<<20) + `"}`)

	tests := []struct {
		name     string
		body     any
		wantCode int
		wantRole api.NodeRole
		wantMsg  string
	}{
		{"worker token", workerReq(c.WorkerToken), http.StatusOK, api.RoleWorker, ""},
		{"manager token", managerReq, http.StatusOK, api.RoleManager, ""},
		{"name of a live node", sameName, http.StatusConflict, "", `already called "joiner"`},
		{"no hostname", noName, http.StatusBadRequest, "", "no hostname"},
		{"garbage token", workerReq("hello"), http.StatusBadRequest, "", "invalid join token"},
		{"another CA's digest", workerReq(newToken(t, foreign)), http.StatusForbidden, "", "another cluster"},
		{"never issued secret", workerReq(newToken(t, f.root)), http.StatusForbidden, "", "rotated or never issued"},
		{"bad advertise address", badAddr, http.StatusBadRequest, "", "not an IP address"},
		{"manager without api endpoint", noAPI, http.StatusBadRequest, "", "api endpoint"},
		{"bad csr", badCSR, http.StatusBadRequest, "", "sign certificate"},
		{"unknown field", []byte(`{"token":"x","colour":"blue"}`), http.StatusBadRequest, "", "unknown field"},
		{"empty body", []byte(" "), http.StatusBadRequest, "", "empty body"},
		{"body over 1 MiB", huge, http.StatusRequestEntityTooLarge, "", "1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.nodeCount()
			a := m.as(nil).do("POST", "/v1/join", tt.body)
			want(t, a, tt.wantCode)
			if tt.wantCode != http.StatusOK {
				if got := f.nodeCount(); got != before {
					t.Errorf("got %d nodes after a refused join, want %d", got, before)
				}
				if !strings.Contains(a.message(), tt.wantMsg) {
					t.Errorf("got message %q, want it to contain %q", a.message(), tt.wantMsg)
				}
				return
			}
			var resp api.JoinResponse
			a.decode(t, &resp)
			checkJoined(t, f, resp, tt.wantRole)
			if got := f.nodeCount(); got != before+1 {
				t.Errorf("got %d nodes, want %d", got, before+1)
			}
		})
	}
}

// checkJoined checks the answer to a join and the node it stored.
func checkJoined(t *testing.T, f *fixture, resp api.JoinResponse, role api.NodeRole) {
	t.Helper()
	c := f.cluster()
	if resp.Role != role || resp.ClusterID != clusterID || resp.CACertPEM != c.CACertPEM {
		t.Errorf("got role %q cluster %q, want %q %q and the cluster CA", resp.Role, resp.ClusterID, role, clusterID)
	}
	if !bytes.Equal(resp.GossipKey, c.GossipKey) {
		t.Errorf("got gossip key %q, want %q", resp.GossipKey, c.GossipKey)
	}
	if !slices.ContainsFunc(resp.Managers, func(e api.Endpoints) bool { return e == f.node("m1").Endpoints }) {
		t.Errorf("got managers %+v, want them to hold m1's endpoints", resp.Managers)
	}
	n := f.node(resp.NodeID)
	if n == nil {
		t.Fatalf("node %s not stored", resp.NodeID)
	}
	if n.Spec.Role != role || n.Spec.Availability != api.AvailabilityActive || n.Status.Addr != "10.0.0.7" || !strings.HasPrefix(n.Description.Hostname, "joiner") {
		t.Errorf("got stored node %+v, want role %s, active, addr 10.0.0.7, hostname joiner", n, role)
	}
	cert, err := ca.ParseCert([]byte(resp.CertPEM))
	if err != nil {
		t.Fatalf("parse cert: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: f.root.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("cert does not verify against the cluster CA: %v", err)
	}
	id, err := ca.IdentityOf(cert)
	if err != nil {
		t.Fatalf("IdentityOf: %v", err)
	}
	if want := (ca.Identity{NodeID: resp.NodeID, Role: string(role), ClusterID: clusterID}); id != want {
		t.Errorf("got cert identity %+v, want %+v", id, want)
	}
}

func TestRotateJoinToken(t *testing.T) {
	f, m := leaderFixture(t)
	old := f.cluster()
	joins := 0
	join := func(token string) answer {
		joins++
		return m.as(nil).do("POST", "/v1/join", api.JoinRequest{
			Token: token, CSRPEM: newCSR(t), Addr: "10.0.0.8",
			Description: api.NodeDescription{Hostname: fmt.Sprintf("h%d", joins)},
			Endpoints:   api.Endpoints{Gossip: "10.0.0.8:7946", API: "10.0.0.8:2377", Raft: "10.0.0.8:2378"},
		})
	}

	want(t, m.admin().do("POST", "/v1/join-tokens/rotate?role=admin", nil), http.StatusBadRequest)
	var rotated api.JoinTokens
	want(t, m.asNode("m1", api.RoleManager).do("POST", "/v1/join-tokens/rotate?role=worker", nil), http.StatusOK).decode(t, &rotated)
	if rotated.Worker == old.WorkerToken || rotated.Manager != old.ManagerToken {
		t.Fatalf("got tokens %+v, want a new worker token and the old manager token %q", rotated, old.ManagerToken)
	}
	var listed api.JoinTokens
	want(t, m.admin().do("GET", "/v1/join-tokens", nil), http.StatusOK).decode(t, &listed)
	if listed != rotated {
		t.Errorf("got listed tokens %+v, want %+v", listed, rotated)
	}

	before := f.nodeCount()
	a := want(t, join(old.WorkerToken), http.StatusForbidden)
	if !strings.Contains(a.message(), "rotated") {
		t.Errorf("got message %q, want it to say the token was rotated", a.message())
	}
	if got := f.nodeCount(); got != before {
		t.Errorf("got %d nodes after a rotated token, want %d", got, before)
	}
	var resp api.JoinResponse
	want(t, join(rotated.Worker), http.StatusOK).decode(t, &resp)
	if resp.Role != api.RoleWorker {
		t.Errorf("got role %q with the new worker token, want worker", resp.Role)
	}
	want(t, join(old.ManagerToken), http.StatusOK).decode(t, &resp)
	if resp.Role != api.RoleManager {
		t.Errorf("got role %q with the manager token, want manager", resp.Role)
	}
}

func TestGetCA(t *testing.T) {
	f, m := leaderFixture(t)
	var out map[string]string
	want(t, m.as(nil).do("GET", "/v1/ca", nil), http.StatusOK).decode(t, &out)
	if out["ca_cert_pem"] != string(f.root.CertPEM) {
		t.Errorf("got CA %q, want the cluster CA", out["ca_cert_pem"])
	}
}

func TestRaftJoin(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("m2", "host-m2", api.RoleManager, api.NodeStateReady)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)

	want(t, m.asNode("m2", api.RoleManager).do("POST", "/v1/raft/join", api.RaftJoinRequest{RaftAddr: "nope"}), http.StatusBadRequest)
	want(t, m.asNode("m2", api.RoleManager).do("POST", "/v1/raft/join", api.RaftJoinRequest{RaftAddr: "10.0.0.2:2378"}), http.StatusNoContent)
	if got, wantAdded := m.raft.Added(), [][2]string{{"m2", "10.0.0.2:2378"}}; !slices.Equal(got, wantAdded) {
		t.Errorf("got AddVoter calls %v, want %v", got, wantAdded)
	}
	// A manager certificate for a node the store knows as a worker.
	want(t, m.asNode("w1", api.RoleManager).do("POST", "/v1/raft/join", api.RaftJoinRequest{RaftAddr: "10.0.0.3:2378"}), http.StatusForbidden)
	// A manager certificate of a node that is no longer in the cluster.
	want(t, m.asNode("gone", api.RoleManager).do("POST", "/v1/raft/join", api.RaftJoinRequest{RaftAddr: "10.0.0.4:2378"}), http.StatusForbidden)
	if got := len(m.raft.Added()); got != 1 {
		t.Errorf("got %d AddVoter calls, want 1", got)
	}
}

func TestRenewCert(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	w1 := m.asNode("w1", api.RoleWorker)

	// Promoted in the store: the renewal carries the new role.
	want(t, m.admin().do("POST", "/v1/nodes/w1/promote", nil), http.StatusOK)
	var resp api.CertResponse
	want(t, w1.do("POST", "/v1/certs/renew", api.CertRequest{CSRPEM: newCSR(t)}), http.StatusOK).decode(t, &resp)
	cert, err := ca.ParseCert([]byte(resp.CertPEM))
	if err != nil {
		t.Fatalf("parse cert: %v", err)
	}
	id, err := ca.IdentityOf(cert)
	if err != nil {
		t.Fatalf("IdentityOf: %v", err)
	}
	if want := (ca.Identity{NodeID: "w1", Role: ca.RoleManager, ClusterID: clusterID}); id != want || resp.Role != api.RoleManager {
		t.Errorf("got identity %+v role %q, want %+v", id, resp.Role, want)
	}

	want(t, w1.do("POST", "/v1/certs/renew", api.CertRequest{CSRPEM: "junk"}), http.StatusBadRequest)
	want(t, m.asNode("gone", api.RoleWorker).do("POST", "/v1/certs/renew", api.CertRequest{CSRPEM: newCSR(t)}), http.StatusNotFound)
	want(t, m.as(nil).do("POST", "/v1/certs/renew", api.CertRequest{CSRPEM: newCSR(t)}), http.StatusUnauthorized)
}
