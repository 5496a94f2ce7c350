package node

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/shoal-dev/shoal/api"
)

// state is what a node keeps on disk to resume with the same identity.
type state struct {
	NodeID     string       `json:"node_id"`
	ClusterID  string       `json:"cluster_id"`
	Role       api.NodeRole `json:"role"`
	Addr       string       `json:"addr"`
	Hostname   string       `json:"hostname"`
	ListenIP   string       `json:"listen_ip,omitempty"`
	APIPort    int          `json:"api_port"`
	RaftPort   int          `json:"raft_port"`
	GossipPort int          `json:"gossip_port"`
	GossipKey  []byte       `json:"gossip_key"`
	// Daemon settings given at first start, kept so a bare restart keeps them.
	MetricsAddr        string          `json:"metrics_addr,omitempty"`
	ContainerdAddress  string          `json:"containerd_address,omitempty"`
	InsecureRegistries []string        `json:"insecure_registries,omitempty"`
	Managers           []api.Endpoints `json:"managers"`
	// PendingCluster holds a new cluster's object until the bootstrap has
	// written it into raft, so a crash in between can finish the job.
	PendingCluster *api.Cluster `json:"pending_cluster,omitempty"`
}

type paths struct{ dir string }

func (p paths) state() string   { return filepath.Join(p.dir, "node.json") }
func (p paths) certDir() string { return filepath.Join(p.dir, "certs") }
func (p paths) caCert() string  { return filepath.Join(p.dir, "certs", "ca.crt") }
func (p paths) cert() string    { return filepath.Join(p.dir, "certs", "node.crt") }
func (p paths) key() string     { return filepath.Join(p.dir, "certs", "node.key") }
func (p paths) raft() string    { return filepath.Join(p.dir, "raft") }
func (p paths) socket() string  { return filepath.Join(p.dir, "shoal.sock") }
func (p paths) tasks() string   { return filepath.Join(p.dir, "tasks") }

// loadState returns nil, nil when the directory holds no node.
func loadState(p paths) (*state, error) {
	data, err := os.ReadFile(p.state())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node state: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("node state %s is damaged: %w", p.state(), err)
	}
	if st.NodeID == "" || st.ClusterID == "" || (st.Role != api.RoleManager && st.Role != api.RoleWorker) {
		return nil, fmt.Errorf("node state %s is incomplete: node id, cluster id and role are required", p.state())
	}
	return &st, nil
}

// writeFileAtomic replaces path so a crash leaves the old or the new file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func saveState(p paths, st *state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode node state: %w", err)
	}
	if err := writeFileAtomic(p.state(), data, 0o600); err != nil {
		return fmt.Errorf("save node state: %w", err)
	}
	return nil
}

// saveCerts stores the node's key and certificate and, if given, the CA.
func saveCerts(p paths, caPEM, certPEM, keyPEM []byte) error {
	if caPEM != nil {
		if err := writeFileAtomic(p.caCert(), caPEM, 0o644); err != nil {
			return fmt.Errorf("save CA certificate: %w", err)
		}
	}
	if err := writeFileAtomic(p.key(), keyPEM, 0o600); err != nil {
		return fmt.Errorf("save node key: %w", err)
	}
	if err := writeFileAtomic(p.cert(), certPEM, 0o644); err != nil {
		return fmt.Errorf("save node certificate: %w", err)
	}
	return nil
}

// loadCerts reads the CA pool and the node's key pair.
func loadCerts(p paths) (*x509.CertPool, *x509.Certificate, tls.Certificate, error) {
	caPEM, err := os.ReadFile(p.caCert())
	if err != nil {
		return nil, nil, tls.Certificate{}, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, tls.Certificate{}, fmt.Errorf("CA certificate %s holds no certificate", p.caCert())
	}
	pair, err := tls.LoadX509KeyPair(p.cert(), p.key())
	if err != nil {
		return nil, nil, tls.Certificate{}, fmt.Errorf("load node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, tls.Certificate{}, fmt.Errorf("parse node certificate: %w", err)
	}
	pair.Leaf = leaf
	return pool, leaf, pair, nil
}

// wipe removes everything that makes this directory a cluster node.
func wipe(p paths) error {
	var errs []error
	for _, path := range []string{p.state(), p.certDir(), p.raft()} {
		errs = append(errs, os.RemoveAll(path))
	}
	return errors.Join(errs...)
}
