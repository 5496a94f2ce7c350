package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

const (
	// RootCommonName is the subject CN of every cluster root CA.
	RootCommonName = "shoal-root-ca"
	// RootValidity is how long a new root CA is valid.
	RootValidity = 20 * 365 * 24 * time.Hour
	// DefaultNodeCertTTL is the lifetime of a node certificate when Sign is given none.
	DefaultNodeCertTTL = 90 * 24 * time.Hour
	// RoleManager and RoleWorker are the roles a node certificate can carry (api.NodeRole values).
	RoleManager = "manager"
	RoleWorker  = "worker"
	// backdate tolerates clock skew between the signer and the peers checking a certificate.
	backdate = 5 * time.Minute
)

var (
	// ErrNoSigningKey is returned by Sign and KeyPEM on a verify-only root CA.
	ErrNoSigningKey = errors.New("ca: root CA has no private key (verify-only)")
	// ErrDigestMismatch is returned by VerifyDigest when the CA is not the pinned one.
	ErrDigestMismatch = errors.New("ca: root CA digest mismatch")
)

// b32 is lowercase-compatible base32 without padding, used for digests and token secrets.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// RootCA is the cluster's root certificate and, on managers, its private key.
type RootCA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	signer  crypto.Signer // nil on a verify-only CA
}

// Identity is who a node certificate names.
type Identity struct {
	NodeID, Role, ClusterID string
}

// NewRootCA creates a self-signed ECDSA P-256 root CA for the cluster, valid for 20 years from now.
func NewRootCA(clusterID string, now time.Time) (*RootCA, error) {
	if clusterID == "" {
		return nil, errors.New("ca: new root CA: empty cluster ID")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate root key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: RootCommonName, Organization: []string{clusterID}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: create root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse root certificate: %w", err)
	}
	return &RootCA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), signer: key}, nil
}

// ParseRootCA loads a root CA from PEM. keyPEM may be nil for a verify-only CA (workers);
// otherwise it must hold the private key matching the certificate.
func ParseRootCA(certPEM, keyPEM []byte) (*RootCA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: root certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("ca: root certificate is not a CA")
	}
	c := &RootCA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", cert.Raw)}
	if keyPEM == nil {
		return c, nil
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: root key: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("ca: root key does not match root certificate")
	}
	c.signer = key
	return c, nil
}

// KeyPEM returns the root private key as an "EC PRIVATE KEY" PEM block.
func (c *RootCA) KeyPEM() ([]byte, error) {
	key, ok := c.signer.(*ecdsa.PrivateKey)
	if !ok {
		return nil, ErrNoSigningKey
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: marshal root key: %w", err)
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

// Pool returns a certificate pool holding only this root.
func (c *RootCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}

// Digest is the SHA-256 of the certificate's DER, in lowercase base32 without padding (52 characters).
func Digest(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return strings.ToLower(b32.EncodeToString(sum[:]))
}

// VerifyDigest parses the CA certificate a joining node fetched and checks it against the
// digest from its join token. It returns the certificate only if it is a CA and matches.
func VerifyDigest(caCertPEM []byte, digest string) (*x509.Certificate, error) {
	cert, err := ParseCert(caCertPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: fetched root certificate: %w", err)
	}
	if got := Digest(cert); got != digest {
		return nil, fmt.Errorf("%w: fetched CA has digest %s, join token pins %s", ErrDigestMismatch, got, digest)
	}
	if !cert.IsCA {
		return nil, errors.New("ca: fetched root certificate is not a CA")
	}
	return cert, nil
}

// Sign issues a node certificate for the public key in csrPEM: CN=NodeID, OU=Role, O=ClusterID,
// SANs = ips plus DNS NodeID, usable for both server and client auth. The CSR's subject is
// ignored: the identity is the signer's decision. ttl <= 0 means DefaultNodeCertTTL; the
// certificate never outlives the root.
func (c *RootCA) Sign(csrPEM []byte, id Identity, ips []net.IP, now time.Time, ttl time.Duration) ([]byte, error) {
	if c.signer == nil {
		return nil, ErrNoSigningKey
	}
	if err := id.validate(); err != nil {
		return nil, fmt.Errorf("ca: sign: %w", err)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("ca: sign: want a CERTIFICATE REQUEST PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: sign: parse csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("ca: sign: csr signature: %w", err)
	}
	if ttl <= 0 {
		ttl = DefaultNodeCertTTL
	}
	notAfter := now.Add(ttl)
	if notAfter.After(c.Cert.NotAfter) {
		notAfter = c.Cert.NotAfter
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         id.NodeID,
			OrganizationalUnit: []string{id.Role},
			Organization:       []string{id.ClusterID},
		},
		DNSNames:              []string{id.NodeID},
		IPAddresses:           ips,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, csr.PublicKey, c.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: sign %s: %w", id.NodeID, err)
	}
	return pemBlock("CERTIFICATE", der), nil
}

// IdentityOf reads the node identity from a node certificate. It does not verify the
// certificate: do that first (the TLS configs here do).
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	s := cert.Subject
	if len(s.OrganizationalUnit) != 1 || len(s.Organization) != 1 {
		return Identity{}, fmt.Errorf("ca: certificate %q: want exactly one OU (role) and one O (cluster)", s.CommonName)
	}
	id := Identity{NodeID: s.CommonName, Role: s.OrganizationalUnit[0], ClusterID: s.Organization[0]}
	if err := id.validate(); err != nil {
		return Identity{}, fmt.Errorf("ca: certificate %q: %w", s.CommonName, err)
	}
	return id, nil
}

func (id Identity) validate() error {
	switch {
	case id.NodeID == "":
		return errors.New("empty node ID")
	case id.ClusterID == "":
		return errors.New("empty cluster ID")
	case id.Role != RoleManager && id.Role != RoleWorker:
		return fmt.Errorf("role %q: want %q or %q", id.Role, RoleManager, RoleWorker)
	}
	return nil
}

// NewKey generates an ECDSA P-256 node key as an "EC PRIVATE KEY" PEM block.
func NewKey() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: marshal key: %w", err)
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

// NewCSR makes a certificate request for the key. It carries no identity: the CA assigns it.
func NewCSR(keyPEM []byte) ([]byte, error) {
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: csr: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("ca: create csr: %w", err)
	}
	return pemBlock("CERTIFICATE REQUEST", der), nil
}

// NeedsRenewal reports whether cert should be renewed at now: once two thirds of its
// lifetime have passed (inclusive), or when it expires within 24 hours, or has expired.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	renewAt := cert.NotBefore.Add(life / 3 * 2)
	return !now.Before(renewAt) || cert.NotAfter.Sub(now) <= 24*time.Hour
}

// ParseCert parses the first PEM "CERTIFICATE" block in b.
func ParseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("want a CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(keyPEM []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "EC PRIVATE KEY" {
		return nil, errors.New("want an EC PRIVATE KEY PEM block")
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("ca: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // positive, never zero
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
