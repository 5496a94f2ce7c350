package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/ca"
	"github.com/shoal-dev/shoal/manager/deks"
	"github.com/shoal-dev/shoal/node/gossip"
)

// baseState is the part of a new node's state that comes from flags.
func (n *Node) baseState() (*state, error) {
	if net.ParseIP(n.cfg.AdvertiseAddr) == nil {
		return nil, fmt.Errorf("advertise address %q is not an IP address", n.cfg.AdvertiseAddr)
	}
	if n.cfg.ListenIP != "" && net.ParseIP(n.cfg.ListenIP) == nil {
		return nil, fmt.Errorf("listen address %q is not an IP address", n.cfg.ListenIP)
	}
	hostname := n.cfg.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	st := &state{
		Addr:       n.cfg.AdvertiseAddr,
		Hostname:   hostname,
		ListenIP:   n.cfg.ListenIP,
		APIPort:    orDefault(n.cfg.APIPort, DefaultAPIPort),
		RaftPort:   orDefault(n.cfg.RaftPort, DefaultRaftPort),
		GossipPort: orDefault(n.cfg.GossipPort, DefaultGossipPort),
	}
	for name, p := range map[string]int{"api": st.APIPort, "raft": st.RaftPort, "gossip": st.GossipPort} {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("%s port %d: want 1-65535", name, p)
		}
	}
	return st, nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// newCluster creates the identity of a new cluster and of its first manager.
func (n *Node) newCluster() (*state, error) {
	st, err := n.baseState()
	if err != nil {
		return nil, err
	}
	now := n.clock.Now()
	st.ClusterID, st.NodeID, st.Role = api.NewID(), api.NewID(), api.RoleManager
	root, err := ca.NewRootCA(st.ClusterID, now)
	if err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	caKey, err := root.KeyPEM()
	if err != nil {
		return nil, err
	}
	keyPEM, csr, err := newKeyAndCSR()
	if err != nil {
		return nil, err
	}
	certPEM, err := root.Sign(csr, ca.Identity{NodeID: st.NodeID, Role: string(api.RoleManager), ClusterID: st.ClusterID},
		[]net.IP{net.ParseIP(st.Addr)}, now, ca.DefaultNodeCertTTL)
	if err != nil {
		return nil, fmt.Errorf("sign the first manager's certificate: %w", err)
	}
	digest := ca.Digest(root.Cert)
	workerToken, err := ca.NewJoinToken(digest)
	if err != nil {
		return nil, err
	}
	managerToken, err := ca.NewJoinToken(digest)
	if err != nil {
		return nil, err
	}
	if st.GossipKey, err = gossip.NewKey(); err != nil {
		return nil, err
	}
	st.Managers = []api.Endpoints{n.endpoints(*st)}
	st.PendingCluster = &api.Cluster{
		ID:              st.ClusterID,
		CACertPEM:       string(root.CertPEM),
		CAKeyPEM:        string(caKey),
		WorkerToken:     workerToken,
		ManagerToken:    managerToken,
		GossipKey:       st.GossipKey,
		CreatedByNodeID: st.NodeID,
		Dispatcher:      n.cfg.Dispatcher,
		AutoLock:        n.cfg.AutoLock,
	}
	if n.cfg.AutoLock {
		st.PendingCluster.UnlockKey = deks.NewUnlockKey()
	}
	if err := saveCerts(n.paths, root.CertPEM, certPEM, keyPEM); err != nil {
		return nil, err
	}
	n.log.Info("new cluster", "cluster", st.ClusterID, "node", st.NodeID)
	return st, nil
}

// join pins the cluster's CA by the token's digest, then trades the token
// for a node identity.
func (n *Node) join(ctx context.Context) (*state, error) {
	st, err := n.baseState()
	if err != nil {
		return nil, err
	}
	// Long enough to wait out the join rate limit behind a rack of others.
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	resp, keyPEM, err := requestJoin(ctx, n.log, n.cfg.JoinAddr, n.cfg.JoinToken, api.JoinRequest{
		Addr:        st.Addr,
		Endpoints:   n.endpoints(*st),
		Description: api.NodeDescription{Hostname: st.Hostname},
	})
	if err != nil {
		return nil, err
	}
	st.NodeID, st.ClusterID, st.Role = resp.NodeID, resp.ClusterID, resp.Role
	st.GossipKey, st.Managers = resp.GossipKey, resp.Managers
	if err := saveCerts(n.paths, []byte(resp.CACertPEM), []byte(resp.CertPEM), keyPEM); err != nil {
		return nil, err
	}
	n.log.Info("joined cluster", "cluster", st.ClusterID, "node", st.NodeID, "role", st.Role)
	return st, nil
}

// joinTimeout bounds a join, waits for the rate limit included.
const joinTimeout = 2 * time.Minute

// requestJoin pins the CA of the manager at addr by the token's digest and
// sends req with the token and a new key's CSR, waiting out the manager's
// join rate limit. It returns the manager's answer and the new key.
func requestJoin(ctx context.Context, log *slog.Logger, addr, joinToken string, req api.JoinRequest) (api.JoinResponse, []byte, error) {
	token, err := ca.ParseJoinToken(strings.TrimSpace(joinToken))
	if err != nil {
		return api.JoinResponse{}, nil, fmt.Errorf("join token: %w", err)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, strconv.Itoa(DefaultAPIPort))
	}
	caPEM, err := fetchCA(ctx, addr)
	if err != nil {
		return api.JoinResponse{}, nil, err
	}
	if _, err := ca.VerifyDigest(caPEM, token.CADigest); err != nil {
		return api.JoinResponse{}, nil, fmt.Errorf("the manager at %s is not the cluster named in the join token, refusing to trust it: %w", addr, err)
	}
	root, err := ca.ParseRootCA(caPEM, nil)
	if err != nil {
		return api.JoinResponse{}, nil, err
	}
	keyPEM, csr, err := newKeyAndCSR()
	if err != nil {
		return api.JoinResponse{}, nil, err
	}
	// Only a manager's certificate may take the token: a worker of the
	// same cluster could otherwise collect it.
	c, err := api.NewClient(addr, ca.ClientTLS(root.Pool(), nil, ca.RoleManager))
	if err != nil {
		return api.JoinResponse{}, nil, err
	}
	defer c.Close()
	req.Token, req.CSRPEM = joinToken, string(csr)
	var resp api.JoinResponse
	for {
		resp, err = c.Join(ctx, req)
		var se *api.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusTooManyRequests {
			break
		}
		// Spread the retries of nodes refused together over up to twice
		// the wait the manager asked for.
		wait := max(se.RetryAfter, time.Second)
		wait += rand.N(wait)
		log.Info("the manager limits joins: retrying", "manager", addr, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return api.JoinResponse{}, nil, fmt.Errorf("join %s: gave up waiting for the join rate limit: %w", addr, err)
		case <-time.After(wait):
		}
	}
	if err != nil {
		return api.JoinResponse{}, nil, fmt.Errorf("join %s: %w", addr, err)
	}
	return resp, keyPEM, nil
}

// fetchCA reads the CA certificate a manager presents, before it is trusted.
func fetchCA(ctx context.Context, addr string) ([]byte, error) {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.InsecureFetchTLS()}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/ca", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach manager %s: %w", addr, err)
	}
	defer resp.Body.Close()
	var body struct {
		CACertPEM string `json:"ca_cert_pem"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("manager %s: get CA: %s", addr, resp.Status)
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&body); err != nil || body.CACertPEM == "" {
		return nil, fmt.Errorf("manager %s: no CA certificate in its answer", addr)
	}
	return []byte(body.CACertPEM), nil
}

// newKeyAndCSR makes a fresh node key and the request to certify it; the
// manager names the node and role in the certificate.
func newKeyAndCSR() (keyPEM, csrPEM []byte, err error) {
	if keyPEM, err = ca.NewKey(); err != nil {
		return nil, nil, err
	}
	if csrPEM, err = ca.NewCSR(keyPEM); err != nil {
		return nil, nil, err
	}
	return keyPEM, csrPEM, nil
}
