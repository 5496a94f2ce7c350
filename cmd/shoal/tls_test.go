package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a throwaway CA that signs certificates without host names, as
// node certificates are.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for a node named cn.
func (ca *testCA) issue(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// tlsServer serves /v1/info over mutual TLS with a certificate from ca that
// names no host, so only a client that skips the host name check gets through.
func tlsServer(t *testing.T, ca *testCA) *httptest.Server {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, "server-node")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"node_id":"server-node","role":"manager"}`))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// writeCerts puts ca.crt, node.crt and node.key in DATA_DIR/certs.
func writeCerts(t *testing.T, dataDir string, caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	dir := filepath.Join(dataDir, "certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.crt": caPEM, "node.crt": certPEM, "node.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTCPHostMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	srv := tlsServer(t, ca)
	host := strings.TrimPrefix(srv.URL, "https://")

	t.Run("trusted", func(t *testing.T) {
		dataDir := t.TempDir()
		certPEM, keyPEM := ca.issue(t, "client-node")
		writeCerts(t, dataDir, ca.pem, certPEM, keyPEM)
		ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": dataDir})
		if code := ta.run("-H", host, "info", "--format", "json"); code != 0 {
			t.Fatalf("got exit code %d (stderr %q), want 0", code, ta.stderr.String())
		}
		if got := ta.stdout.String(); !strings.Contains(got, `"node_id": "server-node"`) {
			t.Errorf("got %q, want the server's info", got)
		}
	})

	t.Run("server from another CA", func(t *testing.T) {
		other := newTestCA(t)
		dataDir := t.TempDir()
		certPEM, keyPEM := other.issue(t, "client-node")
		writeCerts(t, dataDir, other.pem, certPEM, keyPEM)
		ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": dataDir})
		if code := ta.run("-H", "tcp://"+host, "info"); code != 1 {
			t.Errorf("got exit code %d, want 1", code)
		}
		if got := ta.stderr.String(); !strings.Contains(got, "server certificate") {
			t.Errorf("got %q, want a server certificate error", got)
		}
	})
}
