package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newRoot(t *testing.T, clusterID string, now time.Time) *RootCA {
	t.Helper()
	root, err := NewRootCA(clusterID, now)
	if err != nil {
		t.Fatalf("NewRootCA: %v", err)
	}
	return root
}

// issue makes a key, signs a certificate for id and returns both, as PEM and as a tls.Certificate.
func issue(t *testing.T, root *RootCA, id Identity, now time.Time) (certPEM []byte, tc tls.Certificate) {
	t.Helper()
	keyPEM, err := NewKey()
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	csr, err := NewCSR(keyPEM)
	if err != nil {
		t.Fatalf("NewCSR: %v", err)
	}
	certPEM, err = root.Sign(csr, id, []net.IP{net.ParseIP("127.0.0.1")}, now, 0)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	tc, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	return certPEM, tc
}

func TestNewRootCA(t *testing.T) {
	root := newRoot(t, "c1", t0)
	c := root.Cert
	if !c.IsCA || c.Subject.CommonName != RootCommonName {
		t.Errorf("got IsCA %v CN %q, want true %q", c.IsCA, c.Subject.CommonName, RootCommonName)
	}
	if got, want := c.NotAfter, t0.Add(RootValidity); !got.Equal(want) {
		t.Errorf("got NotAfter %v, want %v", got, want)
	}
	if d := Digest(c); len(d) != 52 || strings.ToLower(d) != d {
		t.Errorf("got digest %q, want 52 lowercase characters", d)
	}

	keyPEM, err := root.KeyPEM()
	if err != nil {
		t.Fatalf("KeyPEM: %v", err)
	}
	again, err := ParseRootCA(root.CertPEM, keyPEM)
	if err != nil {
		t.Fatalf("ParseRootCA: %v", err)
	}
	if Digest(again.Cert) != Digest(c) {
		t.Errorf("got a different root after ParseRootCA")
	}
	other := newRoot(t, "c1", t0)
	otherKey, _ := other.KeyPEM()
	if _, err := ParseRootCA(root.CertPEM, otherKey); err == nil {
		t.Errorf("ParseRootCA with another root's key: got nil error, want mismatch")
	}
}

func TestVerifyOnlyRootCannotSign(t *testing.T) {
	root := newRoot(t, "c1", t0)
	ro, err := ParseRootCA(root.CertPEM, nil)
	if err != nil {
		t.Fatalf("ParseRootCA: %v", err)
	}
	keyPEM, _ := NewKey()
	csr, _ := NewCSR(keyPEM)
	_, err = ro.Sign(csr, Identity{NodeID: "n1", Role: RoleWorker, ClusterID: "c1"}, nil, t0, 0)
	if !errors.Is(err, ErrNoSigningKey) {
		t.Errorf("Sign: got %v, want %v", err, ErrNoSigningKey)
	}
	if _, err := ro.KeyPEM(); !errors.Is(err, ErrNoSigningKey) {
		t.Errorf("KeyPEM: got %v, want %v", err, ErrNoSigningKey)
	}
}

func TestVerifyDigest(t *testing.T) {
	root := newRoot(t, "c1", t0)
	other := newRoot(t, "c1", t0)
	got, err := VerifyDigest(root.CertPEM, Digest(root.Cert))
	if err != nil || !got.Equal(root.Cert) {
		t.Fatalf("VerifyDigest with matching digest: got %v, want the root", err)
	}
	_, err = VerifyDigest(other.CertPEM, Digest(root.Cert))
	if !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("VerifyDigest of another CA: got %v, want %v", err, ErrDigestMismatch)
	}
	if _, err := VerifyDigest([]byte("garbage"), Digest(root.Cert)); err == nil {
		t.Errorf("VerifyDigest of garbage: got nil error")
	}
}

func TestSignIdentityRoundTrip(t *testing.T) {
	root := newRoot(t, "c1", t0)
	id := Identity{NodeID: "node-abc", Role: RoleManager, ClusterID: "c1"}
	certPEM, _ := issue(t, root, id, t0)
	cert, err := ParseCert(certPEM)
	if err != nil {
		t.Fatalf("ParseCert: %v", err)
	}
	got, err := IdentityOf(cert)
	if err != nil || got != id {
		t.Fatalf("IdentityOf: got %+v, %v, want %+v", got, err, id)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != id.NodeID || len(cert.IPAddresses) != 1 {
		t.Errorf("got SANs %v %v, want [%s] [127.0.0.1]", cert.DNSNames, cert.IPAddresses, id.NodeID)
	}
	if got, want := cert.NotAfter, t0.Add(DefaultNodeCertTTL); !got.Equal(want) {
		t.Errorf("got NotAfter %v, want %v", got, want)
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: root.Pool(), CurrentTime: t0,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestSignRejectsBadIdentity(t *testing.T) {
	root := newRoot(t, "c1", t0)
	keyPEM, _ := NewKey()
	csr, _ := NewCSR(keyPEM)
	for _, id := range []Identity{
		{NodeID: "", Role: RoleWorker, ClusterID: "c1"},
		{NodeID: "n1", Role: "admin", ClusterID: "c1"},
		{NodeID: "n1", Role: RoleWorker, ClusterID: ""},
	} {
		if _, err := root.Sign(csr, id, nil, t0, 0); err == nil {
			t.Errorf("Sign(%+v): got nil error, want one", id)
		}
	}
	if _, err := root.Sign([]byte("not a csr"), Identity{"n1", RoleWorker, "c1"}, nil, t0, 0); err == nil {
		t.Errorf("Sign(garbage csr): got nil error, want one")
	}
}

func TestNeedsRenewal(t *testing.T) {
	long := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(90 * 24 * time.Hour)}
	short := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(12 * time.Hour)}
	day := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(30 * time.Hour)}
	twoThirds := t0.Add(60 * 24 * time.Hour)
	tests := []struct {
		name string
		cert *x509.Certificate
		now  time.Time
		want bool
	}{
		{"fresh", long, t0, false},
		{"just before two thirds", long, twoThirds.Add(-time.Second), false},
		{"at two thirds", long, twoThirds, true},
		{"past two thirds", long, twoThirds.Add(time.Hour), true},
		{"expired", long, long.NotAfter.Add(time.Second), true},
		{"short lived expires within 24h", short, t0, true},
		// 30h cert: two thirds is at 20h, so the 24h rule decides at 6h.
		{"30h cert with 24h1s left", day, t0.Add(6*time.Hour - time.Second), false},
		{"30h cert with 24h left", day, t0.Add(6 * time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsRenewal(tt.cert, tt.now); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
