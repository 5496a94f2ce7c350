package lb

import (
	"errors"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/google/nftables"
)

func TestInvalidDesiredState(t *testing.T) {
	v4 := netip.MustParseAddr("10.0.0.2")
	v6 := netip.MustParseAddr("fd00::1")
	subnet := netip.MustParsePrefix("10.255.0.0/16")
	tests := []struct {
		name string
		do   func() error
	}{
		{"empty task netns", func() error { return ApplyTaskRules("", nil) }},
		{"ipv6 vip", func() error { return ApplyTaskRules("/nonexistent", []VIP{{Addr: v6}}) }},
		{"zero vip", func() error { return ApplyTaskRules("/nonexistent", []VIP{{}}) }},
		{"vip twice", func() error {
			return ApplyTaskRules("/nonexistent", []VIP{{Addr: v4}, {Addr: v4}})
		}},
		{"ipv6 backend", func() error {
			return ApplyTaskRules("/nonexistent", []VIP{{Addr: v4, Backends: []netip.Addr{v6}}})
		}},
		{"bad protocol", func() error {
			return ApplyIngress("/nonexistent", []PublishedPort{{Protocol: "sctp", Published: 80, Target: 80}}, subnet)
		}},
		{"zero published port", func() error {
			return ApplyIngress("/nonexistent", []PublishedPort{{Target: 80}}, subnet)
		}},
		{"zero target port", func() error {
			return ApplyIngress("/nonexistent", []PublishedPort{{Published: 80}}, subnet)
		}},
		{"port twice", func() error {
			return ApplyIngress("/nonexistent", []PublishedPort{
				{Protocol: "tcp", Published: 80, Target: 80}, {Published: 80, Target: 81}}, subnet)
		}},
		{"ipv6 ingress backend", func() error {
			return ApplyIngress("/nonexistent", []PublishedPort{{Published: 80, Target: 80, Backends: []netip.Addr{v6}}}, subnet)
		}},
		{"no ingress subnet", func() error {
			return ApplyIngress("/nonexistent", []PublishedPort{{Published: 80, Target: 80}}, netip.Prefix{})
		}},
		{"ipv6 ingress subnet", func() error {
			return ApplyIngress("/nonexistent", []PublishedPort{{Published: 80, Target: 80}}, netip.MustParsePrefix("fd00::/64"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want %v", err, ErrInvalid)
			}
		})
	}
}

func TestNormalizeSortsAndDedupes(t *testing.T) {
	got, err := normalizeVIPs([]VIP{
		{Addr: netip.MustParseAddr("10.0.0.9"), Backends: addrs("10.0.1.3", "10.0.1.2", "10.0.1.3")},
		{Addr: netip.MustParseAddr("10.0.0.1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []VIP{
		{Addr: netip.MustParseAddr("10.0.0.1"), Backends: []netip.Addr{}},
		{Addr: netip.MustParseAddr("10.0.0.9"), Backends: addrs("10.0.1.2", "10.0.1.3")},
	}
	if !slices.EqualFunc(got, want, func(a, b VIP) bool { return a.Addr == b.Addr && slices.Equal(a.Backends, b.Backends) }) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestNetmask(t *testing.T) {
	for _, tt := range []struct {
		bits int
		want []byte
	}{{0, []byte{0, 0, 0, 0}}, {8, []byte{255, 0, 0, 0}}, {20, []byte{255, 255, 240, 0}}, {32, []byte{255, 255, 255, 255}}} {
		if got := netipMask(tt.bits); !slices.Equal(got, tt.want) {
			t.Errorf("netipMask(%d): got %v, want %v", tt.bits, got, tt.want)
		}
	}
}

// mapValues returns the values of each map, in key order, as strings for comparison.
func mapValues(st tableState) [][]string {
	var out [][]string
	for _, elems := range st.maps {
		vals := make([]string, len(elems))
		for _, e := range elems {
			k := int(e.Key[0]) // host-endian small integers; little endian here
			if k >= len(vals) {
				return nil
			}
			ip, _ := netip.AddrFromSlice(e.Val[:4])
			s := ip.String()
			if len(e.Val) == 8 {
				s += ":" + strconv.Itoa(int(e.Val[4])<<8|int(e.Val[5]))
			}
			vals[k] = s
		}
		out = append(out, vals)
	}
	slices.SortFunc(out, func(a, b []string) int { return slices.Compare(a, b) })
	return out
}

func TestTaskRulesApplyReplaceRemove(t *testing.T) {
	path := newNetns(t)
	vipA := netip.MustParseAddr("10.200.0.10")
	vipB := netip.MustParseAddr("10.200.0.11")
	vipC := netip.MustParseAddr("10.200.0.12")

	if err := ApplyTaskRules(path, []VIP{
		{Addr: vipA, Backends: addrs("10.0.0.3", "10.0.0.2")},
		{Addr: vipB},
	}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	st := readTable(t, path, TaskTable)
	if !st.exists {
		t.Fatalf("table %s missing after apply", TaskTable)
	}
	out, ok := st.chains[chainOutput]
	if len(st.chains) != 1 || !ok {
		t.Fatalf("got chains %v, want only %s", st.chains, chainOutput)
	}
	if out.Type != nftables.ChainTypeNAT || out.Hooknum == nil || *out.Hooknum != *nftables.ChainHookOutput ||
		out.Priority == nil || *out.Priority != *nftables.ChainPriorityNATDest {
		t.Errorf("got chain %+v, want nat output at priority -100", out)
	}
	if got := st.rules[chainOutput]; got != 2 {
		t.Errorf("got %d rules, want 2", got)
	}
	if got, want := mapValues(st), [][]string{{"10.0.0.2", "10.0.0.3"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got maps %v, want %v", got, want)
	}

	// Other backends and VIPs replace the whole table: no rule or map of the old one is left.
	next := []VIP{
		{Addr: vipA, Backends: addrs("10.0.0.4", "10.0.0.5", "10.0.0.6")},
		{Addr: vipB, Backends: addrs("10.0.0.7")},
		{Addr: vipC, Backends: addrs("10.0.0.8", "10.0.0.9")},
	}
	for i := range 2 { // twice: re-applying the same state changes nothing
		if err := ApplyTaskRules(path, next); err != nil {
			t.Fatalf("re-apply %d: %v", i, err)
		}
		st = readTable(t, path, TaskTable)
		if got := st.totalRules(); got != 3 {
			t.Errorf("re-apply %d: got %d rules, want 3", i, got)
		}
		want := [][]string{{"10.0.0.4", "10.0.0.5", "10.0.0.6"}, {"10.0.0.8", "10.0.0.9"}}
		if got := mapValues(st); !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("re-apply %d: got maps %v, want %v", i, got, want)
		}
		if n, err := ListRules(path); err != nil || n != 3 {
			t.Errorf("re-apply %d: ListRules got %d, %v, want 3", i, n, err)
		}
	}

	if err := RemoveTaskRules(path); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if st := readTable(t, path, TaskTable); st.exists {
		t.Errorf("table %s left after remove: %+v", TaskTable, st)
	}
	if n, err := ListRules(path); err != nil || n != 0 {
		t.Errorf("ListRules after remove: got %d, %v, want 0", n, err)
	}
	if err := RemoveTaskRules(path); err != nil {
		t.Errorf("second remove: got %v, want nil", err)
	}

	// No VIPs means no table (no nat hook in the task at all).
	if err := ApplyTaskRules(path, []VIP{{Addr: vipA}}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyTaskRules(path, nil); err != nil {
		t.Fatalf("apply empty: %v", err)
	}
	if st := readTable(t, path, TaskTable); st.exists {
		t.Errorf("table %s left after applying no VIPs", TaskTable)
	}
}

func TestRemoveTaskRulesGoneNetns(t *testing.T) {
	requireRoot(t)
	if err := RemoveTaskRules(filepath.Join(t.TempDir(), "gone")); err != nil {
		t.Errorf("got %v, want nil", err)
	}
}

func TestIngressApplyReplaceRemove(t *testing.T) {
	path := newNetns(t)
	subnet := netip.MustParsePrefix("10.255.0.0/16")
	ports := []PublishedPort{
		{Protocol: "tcp", Published: 8080, Target: 80, Backends: addrs("10.255.0.5", "10.255.0.6")},
		{Protocol: "udp", Published: 5353, Target: 53, Backends: addrs("10.255.0.7")},
		{Published: 9000, Target: 9000}, // tcp, no backend: reject
	}
	if err := ApplyIngress(path, ports, subnet); err != nil {
		t.Fatalf("apply: %v", err)
	}
	st := readTable(t, path, IngressTable)
	wantRules := map[string]int{chainPrerouting: 1, chainOutput: 1, chainPostrouting: 1, chainPublished: 3}
	if !maps.Equal(st.rules, wantRules) {
		t.Errorf("got rules per chain %v, want %v", st.rules, wantRules)
	}
	hooks := map[string]*nftables.ChainHook{
		chainPrerouting: nftables.ChainHookPrerouting, chainOutput: nftables.ChainHookOutput,
		chainPostrouting: nftables.ChainHookPostrouting,
	}
	for name, hook := range hooks {
		ch := st.chains[name]
		if ch == nil || ch.Type != nftables.ChainTypeNAT || ch.Hooknum == nil || *ch.Hooknum != *hook {
			t.Errorf("chain %s: got %+v, want nat base chain on hook %d", name, ch, *hook)
		}
	}
	if got, want := mapValues(st), [][]string{{"10.255.0.5:80", "10.255.0.6:80"}, {"10.255.0.7:53"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got maps %v, want %v", got, want)
	}

	ports = []PublishedPort{{Published: 8080, Target: 8000, Backends: addrs("10.255.0.9", "10.255.0.8")}}
	for i := range 2 {
		if err := ApplyIngress(path, ports, subnet); err != nil {
			t.Fatalf("re-apply %d: %v", i, err)
		}
		st = readTable(t, path, IngressTable)
		wantRules[chainPublished] = 1
		if !maps.Equal(st.rules, wantRules) {
			t.Errorf("re-apply %d: got rules per chain %v, want %v", i, st.rules, wantRules)
		}
		if got, want := mapValues(st), [][]string{{"10.255.0.8:8000", "10.255.0.9:8000"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("re-apply %d: got maps %v, want %v", i, got, want)
		}
		if n, err := ListRules(path); err != nil || n != 4 {
			t.Errorf("re-apply %d: ListRules got %d, %v, want 4", i, n, err)
		}
	}

	// Both tables in one namespace are counted, and removing one leaves the other.
	if err := ApplyTaskRules(path, []VIP{{Addr: netip.MustParseAddr("10.200.0.10")}}); err != nil {
		t.Fatal(err)
	}
	if n, err := ListRules(path); err != nil || n != 5 {
		t.Errorf("ListRules with both tables: got %d, %v, want 5", n, err)
	}
	if err := RemoveIngress(path); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if st := readTable(t, path, IngressTable); st.exists {
		t.Errorf("table %s left after remove", IngressTable)
	}
	if n, err := ListRules(path); err != nil || n != 1 {
		t.Errorf("ListRules after removing ingress: got %d, %v, want 1", n, err)
	}
	if err := RemoveIngress(path); err != nil {
		t.Errorf("second remove: got %v, want nil", err)
	}
}

// TestIngressCurrentNetns applies with netnsPath "" from a thread inside a test namespace:
// the rules land in the caller's namespace.
func TestIngressCurrentNetns(t *testing.T) {
	path := newNetns(t)
	ports := []PublishedPort{{Published: 8080, Target: 80, Backends: addrs("10.255.0.5")}}
	var n int
	err := inNetns(path, func() error {
		if err := ApplyIngress("", ports, netip.MustParsePrefix("10.255.0.0/16")); err != nil {
			return err
		}
		var err error
		n, err = ListRules("")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("got %d rules, want 4", n)
	}
	if st := readTable(t, path, IngressTable); st.totalRules() != 4 {
		t.Errorf("got %d rules in the test netns, want 4", st.totalRules())
	}
	if err := inNetns(path, func() error { return RemoveIngress("") }); err != nil {
		t.Fatal(err)
	}
	if st := readTable(t, path, IngressTable); st.exists {
		t.Errorf("table %s left after remove", IngressTable)
	}
}
