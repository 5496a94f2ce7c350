package lb

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// GatewayTable is the table that masquerades what tasks send out through the node's
// gateway bridge, in the ip (IPv4) family.
const GatewayTable = "shoal_gw"

const ifnamsiz = 16

// ApplyGateway replaces table shoal_gw in the network namespace at netnsPath ("" is the
// calling thread's, i.e. the node's own) with one nat postrouting rule, `ip saddr SUBNET
// oifname != "BRIDGE" masquerade`: tasks' traffic from the gateway subnet leaves the node
// with the address of the link it leaves by, as from docker_gwbridge. The table is
// replaced in one batch. The caller turns on net.ipv4.ip_forward.
func ApplyGateway(netnsPath string, subnet netip.Prefix, bridge string) error {
	if !subnet.IsValid() || !subnet.Addr().Is4() {
		return fmt.Errorf("%w: gateway subnet %v is not an IPv4 prefix", ErrInvalid, subnet)
	}
	if bridge == "" || len(bridge) >= ifnamsiz {
		return fmt.Errorf("%w: gateway bridge name %q", ErrInvalid, bridge)
	}
	return withConn(netnsPath, func(c *nftables.Conn) error {
		b := replaceTable(c, GatewayTable)
		post := b.natChain(chainPostrouting, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
		name := make([]byte, ifnamsiz)
		copy(name, bridge)
		b.rule(post,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: netipMask(subnet.Bits()), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: subnet.Masked().Addr().AsSlice()},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: name},
			&expr.Masq{},
		)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("apply %s in netns %q: %w", GatewayTable, netnsPath, err)
		}
		return nil
	})
}

// RemoveGateway deletes table shoal_gw from the network namespace at netnsPath ("" is the
// current one). A missing table is not an error.
func RemoveGateway(netnsPath string) error {
	return withConn(netnsPath, func(c *nftables.Conn) error { return removeTable(c, GatewayTable) })
}
