package dns

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
)

func addrs(t *testing.T, ss ...string) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func testRecords(t *testing.T) []Record {
	t.Helper()
	return []Record{
		{Network: "front", Service: "web", VIP: netip.MustParseAddr("10.0.1.2"), Tasks: addrs(t, "10.0.1.4", "10.0.1.3")},
		{Network: "back", Service: "web", VIP: netip.MustParseAddr("10.0.2.2"), Tasks: addrs(t, "10.0.2.3")},
		{Network: "back", Service: "db", Tasks: addrs(t, "10.0.2.6", "10.0.2.5")},
		{Network: "other", Service: "hidden", VIP: netip.MustParseAddr("10.0.3.2"), Tasks: addrs(t, "10.0.3.3")},
		{Network: "front", Service: "idle", VIP: netip.MustParseAddr("10.0.1.9")},
		{Network: "front", Service: "idlerr"},
	}
}

func TestTableLookup(t *testing.T) {
	table := NewTable()
	table.Set(testRecords(t))
	tests := []struct {
		name     string
		networks []string
		query    string
		want     []string
		wantOK   bool
	}{
		{"vip", []string{"front"}, "web", []string{"10.0.1.2"}, true},
		{"vip trailing dot", []string{"front"}, "web.", []string{"10.0.1.2"}, true},
		{"vip case", []string{"front"}, "WeB.", []string{"10.0.1.2"}, true},
		{"vip per shared network", []string{"front", "back"}, "web", []string{"10.0.1.2", "10.0.2.2"}, true},
		{"vip other network only", []string{"back"}, "web", []string{"10.0.2.2"}, true},
		{"tasks", []string{"front"}, "tasks.web.", []string{"10.0.1.3", "10.0.1.4"}, true},
		{"tasks case", []string{"front"}, "TASKS.Web", []string{"10.0.1.3", "10.0.1.4"}, true},
		{"tasks on all shared networks", []string{"front", "back"}, "tasks.web", []string{"10.0.1.3", "10.0.1.4", "10.0.2.3"}, true},
		{"dnsrr", []string{"back"}, "db", []string{"10.0.2.5", "10.0.2.6"}, true},
		{"dnsrr tasks", []string{"back"}, "tasks.db", []string{"10.0.2.5", "10.0.2.6"}, true},
		{"service.network", []string{"front", "back"}, "web.back.", []string{"10.0.2.2"}, true},
		{"tasks.service.network", []string{"front", "back"}, "tasks.web.front", []string{"10.0.1.3", "10.0.1.4"}, true},
		{"service.network not shared", []string{"front"}, "web.back", nil, false},
		{"not on a shared network", []string{"front", "back"}, "hidden", nil, false},
		{"tasks not on a shared network", []string{"front"}, "tasks.hidden", nil, false},
		{"no networks", nil, "web", nil, false},
		{"unknown", []string{"front"}, "example.com.", nil, false},
		{"empty", []string{"front"}, ".", nil, false},
		{"vip without running tasks", []string{"front"}, "idle", []string{"10.0.1.9"}, true},
		{"no running tasks", []string{"front"}, "tasks.idle", nil, true},
		{"dnsrr without running tasks", []string{"front"}, "idlerr", nil, true},
		{"duplicate network", []string{"front", "front"}, "tasks.web", []string{"10.0.1.3", "10.0.1.4"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := table.Lookup(tt.networks, tt.query)
			if ok != tt.wantOK {
				t.Fatalf("Lookup(%v, %q) ok = %v, want %v", tt.networks, tt.query, ok, tt.wantOK)
			}
			if want := addrs(t, tt.want...); !slices.Equal(got, want) {
				t.Errorf("Lookup(%v, %q) = %v, want %v", tt.networks, tt.query, got, want)
			}
		})
	}
}

func TestTableSetReplaces(t *testing.T) {
	table := NewTable()
	table.Set(testRecords(t))
	// A task stopped and a service removed: the agent sets the running tasks only.
	table.Set([]Record{{Network: "front", Service: "web", VIP: netip.MustParseAddr("10.0.1.2"), Tasks: addrs(t, "10.0.1.4")}})
	if got, _ := table.Lookup([]string{"front"}, "tasks.web"); !slices.Equal(got, addrs(t, "10.0.1.4")) {
		t.Errorf("tasks.web = %v, want [10.0.1.4]", got)
	}
	if got, ok := table.Lookup([]string{"back"}, "db"); ok {
		t.Errorf("removed service db = %v, want not found", got)
	}
	table.Set(nil)
	if got, ok := table.Lookup([]string{"front"}, "web"); ok {
		t.Errorf("web in an empty table = %v, want not found", got)
	}
}

func TestTableSetMergesAndCopies(t *testing.T) {
	table := NewTable()
	tasks := addrs(t, "10.0.1.3", "10.0.1.3")
	table.Set([]Record{
		{Network: "front", Service: "Web.", Tasks: tasks},
		{Network: "front", Service: "web", VIP: netip.MustParseAddr("10.0.1.2"), Tasks: addrs(t, "10.0.1.5", "::ffff:10.0.1.4")},
	})
	tasks[0] = netip.MustParseAddr("192.0.2.1") // the caller's slice is not kept
	if got, _ := table.Lookup([]string{"front"}, "tasks.web"); !slices.Equal(got, addrs(t, "10.0.1.3", "10.0.1.4", "10.0.1.5")) {
		t.Errorf("tasks.web = %v, want [10.0.1.3 10.0.1.4 10.0.1.5]", got)
	}
	if got, _ := table.Lookup([]string{"front"}, "web"); !slices.Equal(got, addrs(t, "10.0.1.2")) {
		t.Errorf("web = %v, want [10.0.1.2]", got)
	}
}

func TestTableConcurrent(t *testing.T) {
	table := NewTable()
	recs := testRecords(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				table.Set(recs)
				if _, ok := table.Lookup([]string{"front"}, "web"); !ok {
					t.Error("web not found")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestHostUpstreams(t *testing.T) {
	path := t.TempDir() + "/resolv.conf"
	writeFile(t, path, `# comment
nameserver 127.0.0.53
nameserver 10.0.0.2
nameserver ::1
nameserver fe80::1%eth0
nameserver 2001:db8::53
nameserver 10.0.0.2
nameserver bogus
search example.com
options edns0
`)
	got := HostUpstreams(path)
	want := []string{"10.0.0.2:53", "[2001:db8::53]:53"}
	if !slices.Equal(got, want) {
		t.Errorf("HostUpstreams = %v, want %v", got, want)
	}
	if got := HostUpstreams(t.TempDir() + "/missing"); got != nil {
		t.Errorf("HostUpstreams(missing) = %v, want none", got)
	}
}

func TestWriteResolvConf(t *testing.T) {
	path := t.TempDir() + "/resolv.conf"
	if err := WriteResolvConf(path); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, path)
	if want := "nameserver 127.0.0.11\noptions ndots:0\n"; got != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}
}

func TestNormalizeUpstream(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"10.0.0.2:53", "10.0.0.2:53", false},
		{"10.0.0.2", "10.0.0.2:53", false},
		{"[2001:db8::1]:5353", "[2001:db8::1]:5353", false},
		{"2001:db8::1", "[2001:db8::1]:53", false},
		{"127.0.0.11:53", "", true},
		{"dns.example:53", "", true},
	}
	for _, tt := range tests {
		got, err := normalizeUpstream(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("normalizeUpstream(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
