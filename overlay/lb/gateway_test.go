package lb

import (
	"errors"
	"maps"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
)

func TestGatewayApplyReplaceRemove(t *testing.T) {
	path := newNetns(t)
	subnet := netip.MustParsePrefix("172.18.0.0/16")
	for i := range 2 { // a second apply replaces the table with the same
		if err := ApplyGateway(path, subnet, "shgw0"); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		st := readTable(t, path, GatewayTable)
		if want := map[string]int{chainPostrouting: 1}; !maps.Equal(st.rules, want) {
			t.Errorf("apply %d: got rules per chain %v, want %v", i, st.rules, want)
		}
		ch := st.chains[chainPostrouting]
		if ch == nil || ch.Type != nftables.ChainTypeNAT || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookPostrouting {
			t.Errorf("apply %d: chain %s: got %+v, want a nat base chain on postrouting", i, chainPostrouting, ch)
		}
		if n, err := ListRules(path); err != nil || n != 1 {
			t.Errorf("apply %d: ListRules got %d, %v, want 1", i, n, err)
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		out, err := exec.Command("ip", "netns", "exec", strings.TrimPrefix(path, "/run/netns/"), "nft", "list", "table", "ip", GatewayTable).CombinedOutput()
		want := `ip saddr 172.18.0.0/16 oifname != "shgw0" masquerade`
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("nft list table ip %s: got %s (%v), want a rule %q", GatewayTable, out, err, want)
		}
	}
	if err := RemoveGateway(path); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if st := readTable(t, path, GatewayTable); st.exists {
		t.Errorf("table %s left after remove", GatewayTable)
	}
	if err := RemoveGateway(path); err != nil {
		t.Errorf("second remove: got %v, want nil", err)
	}
}

func TestGatewayInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		subnet netip.Prefix
		bridge string
	}{
		{"no subnet", netip.Prefix{}, "shgw0"},
		{"IPv6 subnet", netip.MustParsePrefix("fd00::/64"), "shgw0"},
		{"no bridge", netip.MustParsePrefix("172.18.0.0/16"), ""},
		{"bridge name too long", netip.MustParsePrefix("172.18.0.0/16"), "a-very-long-name"},
	} {
		if err := ApplyGateway("/nonexistent", tc.subnet, tc.bridge); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want %v", tc.name, err, ErrInvalid)
		}
	}
}
