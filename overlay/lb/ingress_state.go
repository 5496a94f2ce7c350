package lb

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// The ingress table is derived from cluster state only: its prerouting rule carries a digest
// of the desired state it was built from (nft shows it as a comment), so each reconcile can
// compare what the kernel holds with what the cluster wants and replace the table when they
// differ, whoever changed it: an earlier agent, a crash mid-way, an operator.

// ingressFormat changes whenever the rules built from the same state change, so that an
// agent upgrade replaces tables built by the older code.
const ingressFormat = "v2"

const digestPrefix = "shoal-ingress digest="

// IngressDigest identifies the table ApplyIngress builds from ports and subnet; "" for no
// ports (no table).
func IngressDigest(ports []PublishedPort, subnet netip.Prefix) (string, error) {
	norm, err := normalizePorts(ports)
	if err != nil {
		return "", err
	}
	return digestOf(norm, subnet), nil
}

func digestOf(norm []PublishedPort, subnet netip.Prefix) string {
	if len(norm) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", ingressFormat, subnet.Masked())
	for _, p := range norm {
		fmt.Fprintf(&b, "%s %d %d %v %v\n", p.Protocol, p.Published, p.Target, p.Backends, p.Addr)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

// IngressState is table shoal_ingress as the kernel holds it.
type IngressState struct {
	Present bool
	// Digest is what the table was built from; "" when it carries none (built by
	// something other than this code).
	Digest string
	// Ports are the destination ports its rules match, whatever built it.
	Ports []uint16
}

// ReadIngress reads table shoal_ingress in the network namespace at netnsPath ("" is the
// current one).
func ReadIngress(netnsPath string) (IngressState, error) {
	var st IngressState
	err := withConn(netnsPath, func(c *nftables.Conn) error {
		var err error
		st, err = readIngress(c)
		return err
	})
	return st, err
}

func readIngress(c *nftables.Conn) (IngressState, error) {
	var st IngressState
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return st, fmt.Errorf("list tables: %w", err)
	}
	var table *nftables.Table
	for _, t := range tables {
		if t.Name == IngressTable {
			table = t
		}
	}
	if table == nil {
		return st, nil
	}
	st.Present = true
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return st, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != IngressTable {
			continue
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return st, fmt.Errorf("rules of %s/%s: %w", IngressTable, ch.Name, err)
		}
		for _, r := range rules {
			if ch.Name == chainPrerouting {
				if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && strings.HasPrefix(s, digestPrefix) {
					st.Digest = strings.TrimPrefix(s, digestPrefix)
				}
			}
			st.Ports = append(st.Ports, dports(r.Exprs)...)
		}
	}
	return st, nil
}

// dports finds `th dport N` matches: a load of the transport header's bytes 2..3 compared
// for equality.
func dports(exprs []expr.Any) []uint16 {
	var out []uint16
	for i := 0; i+1 < len(exprs); i++ {
		p, ok := exprs[i].(*expr.Payload)
		if !ok || p.Base != expr.PayloadBaseTransportHeader || p.Offset != 2 || p.Len != 2 {
			continue
		}
		if cmp, ok := exprs[i+1].(*expr.Cmp); ok && cmp.Op == expr.CmpOpEq && len(cmp.Data) == 2 {
			out = append(out, binaryutil.BigEndian.Uint16(cmp.Data))
		}
	}
	return out
}

// SyncIngress makes table shoal_ingress in the network namespace at netnsPath ("" is the
// current one) what ApplyIngress builds from ports and subnet: it reads the digest the table
// carries and replaces the table, in one batch, only when it differs, or removes it when
// there are no ports. It reports whether the kernel's state changed.
func SyncIngress(netnsPath string, ports []PublishedPort, subnet netip.Prefix) (bool, error) {
	norm, err := normalizePorts(ports)
	if err != nil {
		return false, err
	}
	if len(norm) > 0 && (!subnet.IsValid() || !subnet.Addr().Is4()) {
		return false, fmt.Errorf("%w: ingress subnet %v is not an IPv4 prefix", ErrInvalid, subnet)
	}
	want := digestOf(norm, subnet)
	changed := false
	err = withConn(netnsPath, func(c *nftables.Conn) error {
		st, err := readIngress(c)
		if err != nil {
			return err
		}
		switch {
		case want == "" && !st.Present:
			return nil
		case want == "":
			changed = true
			return removeTable(c, IngressTable)
		case st.Present && st.Digest == want:
			return nil
		}
		changed = true
		if err := addIngressTable(c, norm, subnet.Masked(), want); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("apply %s in netns %q: %w", IngressTable, netnsPath, err)
		}
		return nil
	})
	return changed, err
}

// DropStaleIngress removes table shoal_ingress from the network namespace at netnsPath (""
// is the current one) when it cannot have come from this code and the cluster's state: it
// carries no digest, or it matches one of own (the node's own ports). Run at agent start,
// before any assignment: such a table may cut the node off from the managers whose
// assignments would replace it (a reject on 2377 once did). A table with a digest stays, so
// published ports keep answering until the first reconcile.
func DropStaleIngress(netnsPath string, own map[uint16]string) (dropped bool, reason string, err error) {
	err = withConn(netnsPath, func(c *nftables.Conn) error {
		st, err := readIngress(c)
		if err != nil || !st.Present {
			return err
		}
		if st.Digest == "" {
			reason = "it carries no digest of Shoal's desired state"
		}
		for _, p := range st.Ports {
			if what, ok := own[p]; ok {
				reason = fmt.Sprintf("it redirects port %d, %s", p, what)
				break
			}
		}
		if reason == "" {
			return nil
		}
		dropped = true
		return removeTable(c, IngressTable)
	})
	return dropped, reason, err
}

// comment is the user data nft shows as `comment "..."`.
func comment(s string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, s)
}
