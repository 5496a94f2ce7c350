package admission

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/ca"
	"github.com/shoal-dev/shoal/store"
)

// maxCertsPerNode bounds the certificates remembered per node: renewals
// come every two thirds of a lifetime, so a handful are ever unexpired.
const maxCertsPerNode = 8

// Serial is how a certificate is named in the store.
func Serial(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

// RecordCert remembers on n a certificate signed for it, so that it can be
// revoked with the node; expired ones are forgotten.
func RecordCert(n *api.Node, certPEM []byte, role api.NodeRole, now time.Time) error {
	cert, err := ca.ParseCert(certPEM)
	if err != nil {
		return fmt.Errorf("record certificate of %s: %w", n.ID, err)
	}
	n.Certs = slices.DeleteFunc(n.Certs, func(c api.IssuedCert) bool { return !c.NotAfter.After(now) })
	n.Certs = append(n.Certs, api.IssuedCert{Serial: Serial(cert), Role: role, NotAfter: cert.NotAfter})
	if len(n.Certs) > maxCertsPerNode {
		n.Certs = n.Certs[len(n.Certs)-maxCertsPerNode:]
	}
	return nil
}

// Revoke puts n's certificates of role (all of them if role is empty) on
// the cluster's deny list and forgets them on n.
func Revoke(c *api.Cluster, n *api.Node, role api.NodeRole) {
	n.Certs = slices.DeleteFunc(n.Certs, func(ic api.IssuedCert) bool {
		if role != "" && ic.Role != role {
			return false
		}
		if !slices.ContainsFunc(c.RevokedCerts, func(r api.RevokedCert) bool { return r.Serial == ic.Serial }) {
			c.RevokedCerts = append(c.RevokedCerts, api.RevokedCert{Serial: ic.Serial, NodeID: n.ID, NotAfter: ic.NotAfter})
		}
		return true
	})
}

// PruneRevoked drops the revocations of certificates that have expired:
// they fail verification anyway.
func PruneRevoked(c *api.Cluster, now time.Time) {
	c.RevokedCerts = slices.DeleteFunc(c.RevokedCerts, func(r api.RevokedCert) bool { return !r.NotAfter.After(now) })
}

// IsRevoked reports whether the certificate with serial is on the deny list.
func (a *Admission) IsRevoked(serial string) bool {
	revoked := false
	a.cfg.Store.View(func(tx store.ReadTx) {
		if c := tx.Cluster(); c != nil {
			revoked = slices.ContainsFunc(c.RevokedCerts, func(r api.RevokedCert) bool { return r.Serial == serial })
		}
	})
	return revoked
}

// GuardTLS returns a copy of cfg that also refuses peers whose certificate
// is on the deny list. It is for the manager-only raft port: the chain of
// a demoted or removed manager's certificate still verifies until it expires.
func (a *Admission) GuardTLS(cfg *tls.Config) *tls.Config {
	out := cfg.Clone()
	inner := cfg.VerifyConnection
	out.VerifyConnection = func(cs tls.ConnectionState) error {
		if inner != nil {
			if err := inner(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) > 0 && a.IsRevoked(Serial(cs.PeerCertificates[0])) {
			return fmt.Errorf("admission: peer certificate %s (serial %s) was revoked: the node was demoted or removed",
				cs.PeerCertificates[0].Subject.CommonName, Serial(cs.PeerCertificates[0]))
		}
		return nil
	}
	return out
}
