package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// Peers are dialled by IP and their addresses change, so no config here checks host
// names: a peer is trusted when its chain verifies against the cluster root and, where
// roles are given, its certificate's role is one of them.

// ServerTLS is for the API and cluster listener (2377). Client certificates are verified if
// given but not required, because a joining node has none yet; handlers use PeerIdentity.
func ServerTLS(root *x509.CertPool, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.VerifyClientCertIfGiven,
		ClientCAs:        root,
		VerifyConnection: verifyPeer(root, false, nil),
	}
}

// MutualTLS is for raft and other manager-to-manager streams. It works as both listener and
// dialer: each side must present a certificate from root and, if peerRoles are given, the
// peer's role must be one of them.
func MutualTLS(root *x509.CertPool, cert tls.Certificate, peerRoles ...string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		ClientAuth:         tls.RequireAndVerifyClientCert,
		ClientCAs:          root,
		RootCAs:            root,
		InsecureSkipVerify: true, // host names are not checked; verifyPeer checks the chain
		VerifyConnection:   verifyPeer(root, true, peerRoles),
	}
}

// ClientTLS is for dialling a manager. cert may be nil (joining, or a CLI without a client
// certificate). The server's chain is verified against root and, if serverRoles are given,
// its role must be one of them.
func ClientTLS(root *x509.CertPool, cert *tls.Certificate, serverRoles ...string) *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		RootCAs:            root,
		InsecureSkipVerify: true, // host names are not checked; verifyPeer checks the chain
		VerifyConnection:   verifyPeer(root, true, serverRoles),
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// InsecureFetchTLS verifies nothing. It is only for fetching the root CA before it is
// pinned; the caller must check the result with VerifyDigest and then reconnect with
// ClientTLS.
func InsecureFetchTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
}

// PeerIdentity returns the identity in the peer's certificate if crypto/tls recorded a
// verified chain for it. That is the case on the accepting side of ServerTLS and MutualTLS.
// On the dialling side the chain is checked by our VerifyConnection instead, which leaves
// no record in the state, so PeerIdentity reports false there: check roles with the
// serverRoles/peerRoles arguments.
func PeerIdentity(state *tls.ConnectionState) (Identity, bool) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	id, err := IdentityOf(state.VerifiedChains[0][0])
	if err != nil {
		return Identity{}, false
	}
	return id, true
}

// verifyPeer returns a VerifyConnection callback that verifies the peer's chain against
// root (any key usage, no host name) and its role against roles, if any.
func verifyPeer(root *x509.CertPool, required bool, roles []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			if required {
				return errors.New("ca: peer presented no certificate")
			}
			return nil
		}
		leaf := cs.PeerCertificates[0]
		opts := x509.VerifyOptions{
			Roots:         root,
			Intermediates: x509.NewCertPool(),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("ca: peer certificate %q: %w", leaf.Subject.CommonName, err)
		}
		if len(roles) == 0 {
			return nil
		}
		id, err := IdentityOf(leaf)
		if err != nil {
			return err
		}
		if !slices.Contains(roles, id.Role) {
			return fmt.Errorf("ca: peer %s has role %q, want one of %q", id.NodeID, id.Role, roles)
		}
		return nil
	}
}
