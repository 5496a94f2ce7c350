package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// serve accepts on l until it is closed and answers each connection with its local address
// (which backend was reached) and remote address (who the backend saw), then closes it.
func serve(t *testing.T, l net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "%s %s", c.LocalAddr(), c.RemoteAddr())
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
}

// listen opens TCP listeners on addrs inside the namespace at path and serves them.
func listen(t *testing.T, path string, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		var l net.Listener
		err := inNetns(path, func() error {
			var err error
			l, err = net.Listen("tcp4", a)
			return err
		})
		if err != nil {
			t.Fatalf("listen %s: %v", a, err)
		}
		serve(t, l)
	}
}

// dialAll dials addr n times from inside the namespace at path and returns how many answers
// each (local, remote) pair gave.
func dialAll(t *testing.T, path, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	err := inNetns(path, func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		for i := range n {
			c, err := d.Dial("tcp4", addr)
			if err != nil {
				return fmt.Errorf("dial %d: %w", i, err)
			}
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			b, err := io.ReadAll(io.LimitReader(c, 256))
			c.Close()
			if err != nil {
				return fmt.Errorf("read %d: %w", i, err)
			}
			got[string(b)]++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return got
}

// dialErr dials addr once from inside the namespace at path and returns the error.
func dialErr(t *testing.T, path, addr string, timeout time.Duration) error {
	t.Helper()
	var derr error
	err := inNetns(path, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", addr)
		if err == nil {
			c.Close()
		}
		derr = err
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return derr
}

// byBackend sums answers by the backend address that served them.
func byBackend(answers map[string]int) map[string]int {
	out := map[string]int{}
	for a, n := range answers {
		var local, remote string
		fmt.Sscan(a, &local, &remote)
		out[local] += n
	}
	return out
}

// TestTaskVIPBalances: inside one namespace, two backends on loopback aliases and VIPs routed
// out of a veth whose peer answers nothing (as a task's VIPs are routed into its overlay
// interface, not local), so that without a rule a connection to a VIP goes nowhere.
// Connections to the VIP reach both backends; a VIP without backends refuses at once.
func TestTaskVIPBalances(t *testing.T) {
	path := newNetns(t)
	h := nlHandle(t, path)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "void"}
	if err := h.LinkAdd(v); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, name := range []string{"eth0", "void"} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("up %s: %v", name, err)
		}
	}
	addAddr(t, h, "eth0", "10.200.0.1/24")
	listen(t, path, "127.0.0.2:8080", "127.0.0.3:8080")

	vip, empty := "10.200.0.10:8080", "10.200.0.11:8080"
	// Without rules the VIPs lead nowhere.
	if err := dialErr(t, path, vip, 200*time.Millisecond); err == nil {
		t.Fatalf("dial %s before rules: got a connection, want none", vip)
	}

	if err := ApplyTaskRules(path, []VIP{
		{Addr: netip.MustParseAddr("10.200.0.10"), Backends: addrs("127.0.0.2", "127.0.0.3")},
		{Addr: netip.MustParseAddr("10.200.0.11")},
	}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	got := byBackend(dialAll(t, path, vip, 20))
	want := map[string]int{"127.0.0.2:8080": 10, "127.0.0.3:8080": 10} // numgen inc: round robin
	if len(got) != 2 || got["127.0.0.2:8080"] == 0 || got["127.0.0.3:8080"] == 0 {
		t.Errorf("got answers by backend %v, want both backends (%v)", got, want)
	}
	t.Logf("answers by backend: %v", got)

	if err := dialErr(t, path, empty, 3*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s (no backends): got %v, want %v", empty, err, syscall.ECONNREFUSED)
	}

	// Scale down to one backend: every connection goes to it.
	if err := ApplyTaskRules(path, []VIP{{Addr: netip.MustParseAddr("10.200.0.10"), Backends: addrs("127.0.0.3")}}); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if got := byBackend(dialAll(t, path, vip, 4)); got["127.0.0.3:8080"] != 4 {
		t.Errorf("after scale down: got %v, want all 4 on 127.0.0.3:8080", got)
	}

	if err := RemoveTaskRules(path); err != nil {
		t.Fatal(err)
	}
	if err := dialErr(t, path, vip, 200*time.Millisecond); err == nil {
		t.Errorf("dial %s after remove: got a connection, want none", vip)
	}
}

// TestIngressBalances: a node ("host") between a client namespace and a backend namespace.
//
//	client 10.202.0.2 --- 10.202.0.1 host 10.201.0.1 --- backend 10.201.0.2, 10.201.0.3 :9000
//	                      10.202.0.5
//
// The backend's default route leads nowhere (as a task's leads to its gateway bridge, not
// to the node that DNATed), so replies get back only through the mesh reply rules, which
// route them to the node whose MAC (02:42 + its ingress address) sent the connection.
// Published port 8080 on the host goes to both backend addresses, from the client
// (prerouting) and from the host itself (output); the backend sees the client's address,
// except from the host's loopback (masqueraded). Port 8082 is published on 10.202.0.5 only.
func TestIngressBalances(t *testing.T) {
	host, client, backend := newNetns(t), newNetns(t), newNetns(t)
	hh, hc, hb := nlHandle(t, host), nlHandle(t, client), nlHandle(t, backend)
	veth(t, hh, hc, client, "to-client", "eth0", "10.202.0.1/24", "10.202.0.2/24")
	veth(t, hh, hb, backend, "to-backend", "eth0", "10.201.0.1/24", "10.201.0.2/24")
	addAddr(t, hb, "eth0", "10.201.0.3/24")
	addAddr(t, hh, "to-client", "10.202.0.5/24")
	// The node's ingress bridge has MAC 02:42 + its ingress address (overlay.MACFor).
	setMAC(t, hh, "to-backend", "02:42:0a:c9:00:01")
	// A default route that leads away from the host, as the task's gateway link does.
	veth(t, hb, hb, backend, "gw0", "gw0peer", "172.31.0.2/24", "172.31.1.3/24")
	if err := hb.RouteAdd(&netlink.Route{Gw: net.ParseIP("172.31.0.1"), LinkIndex: linkIndex(t, hb, "gw0")}); err != nil {
		t.Fatalf("default route in backend: %v", err)
	}
	if err := inNetns(host, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return err
		}
		// Lets the host reach its published ports on 127.0.0.1: the DNATed packet keeps the
		// loopback source until the masquerade, and the ingress link must route it (Docker sets
		// this on docker_gwbridge). The caller who owns the ingress bridge sets it.
		return os.WriteFile("/proc/sys/net/ipv4/conf/to-backend/route_localnet", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("sysctls in host: %v", err)
	}
	listen(t, backend, "0.0.0.0:9000")
	// A strict reverse-path filter, as some distributions set: the mesh rules make it loose.
	if err := inNetns(backend, func() error {
		for _, c := range []string{"all", "eth0"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+c+"/rp_filter", []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("rp_filter in backend: %v", err)
	}
	if err := ApplyMeshReply(backend, "eth0", addrs("10.201.0.1", "10.201.0.9")); err != nil {
		t.Fatalf("mesh reply rules: %v", err)
	}

	if err := ApplyIngress(host, []PublishedPort{
		{Protocol: "tcp", Published: 8080, Target: 9000, Backends: addrs("10.201.0.2", "10.201.0.3")},
		{Protocol: "tcp", Published: 8081, Target: 9000},
		{Protocol: "tcp", Published: 8082, Target: 9000, Backends: addrs("10.201.0.2"), Addr: netip.MustParseAddr("10.202.0.5")},
	}, netip.MustParsePrefix("10.201.0.0/24")); err != nil {
		t.Fatalf("apply: %v", err)
	}

	for _, tc := range []struct{ name, ns, addr, seen string }{
		{"from client", client, "10.202.0.1:8080", "10.202.0.2"},
		{"from host", host, "10.202.0.1:8080", "10.202.0.1"},
		{"from host localhost", host, "127.0.0.1:8080", "10.201.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers := dialAll(t, tc.ns, tc.addr, 20)
			got := byBackend(answers)
			if len(got) != 2 || got["10.201.0.2:9000"] == 0 || got["10.201.0.3:9000"] == 0 {
				t.Errorf("got answers by backend %v, want both 10.201.0.2:9000 and 10.201.0.3:9000", got)
			}
			for a := range answers {
				var local, remote string
				fmt.Sscan(a, &local, &remote)
				if ap, err := netip.ParseAddrPort(remote); err != nil || ap.Addr() != netip.MustParseAddr(tc.seen) {
					t.Errorf("backend saw client %s, want %s", remote, tc.seen)
				}
			}
			t.Logf("answers by backend: %v", got)
		})
	}

	if err := dialErr(t, client, "10.202.0.1:8081", 3*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial port without backends: got %v, want %v", err, syscall.ECONNREFUSED)
	}
	// Bound on one address: answers there, not on the host's other address.
	if got := byBackend(dialAll(t, client, "10.202.0.5:8082", 2)); got["10.201.0.2:9000"] != 2 {
		t.Errorf("10.202.0.5:8082: got %v, want 2 answers from 10.201.0.2:9000", got)
	}
	if err := dialErr(t, client, "10.202.0.1:8082", 3*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial 10.202.0.1:8082 (published on 10.202.0.5 only): got %v, want %v", err, syscall.ECONNREFUSED)
	}

	if err := RemoveIngress(host); err != nil {
		t.Fatal(err)
	}
	if n, err := ListRules(host); err != nil || n != 0 {
		t.Errorf("ListRules after remove: got %d, %v, want 0", n, err)
	}
	if err := dialErr(t, client, "10.202.0.1:8080", 3*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after remove: got %v, want %v (nothing listens on the host)", err, syscall.ECONNREFUSED)
	}
	if err := ApplyMeshReply(backend, "eth0", nil); err != nil {
		t.Fatal(err)
	}
	if n, err := ListRules(backend); err != nil || n != 0 {
		t.Errorf("ListRules in the backend after removing the mesh rules: got %d, %v, want 0", n, err)
	}
	if rules, err := hb.RuleList(unix.AF_INET); err != nil || slices.ContainsFunc(rules, func(r netlink.Rule) bool { return r.Priority == meshRulePriority }) {
		t.Errorf("ip rules left in the backend: %v, %v", rules, err)
	}
}

// TestHostPorts: host-mode ports DNAT to a task's gateway address and keep the client's
// address; a port bound on one address does not answer on the others.
//
//	client 10.203.0.2 --- 10.203.0.1 host 172.18.0.1 (gateway bridge) --- task 172.18.0.2 :9000
//	                      10.203.0.5
func TestHostPorts(t *testing.T) {
	host, client, task := newNetns(t), newNetns(t), newNetns(t)
	hh, hc, ht := nlHandle(t, host), nlHandle(t, client), nlHandle(t, task)
	veth(t, hh, hc, client, "to-client", "eth0", "10.203.0.1/24", "10.203.0.2/24")
	veth(t, hh, ht, task, "to-task", "gw0", "172.18.0.1/16", "172.18.0.2/16")
	addAddr(t, hh, "to-client", "10.203.0.5/24")
	if err := ht.RouteAdd(&netlink.Route{Gw: net.ParseIP("172.18.0.1"), LinkIndex: linkIndex(t, ht, "gw0")}); err != nil {
		t.Fatalf("default route in task: %v", err)
	}
	if err := inNetns(host, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return err
		}
		return os.WriteFile("/proc/sys/net/ipv4/conf/to-task/route_localnet", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("sysctls in host: %v", err)
	}
	listen(t, task, "0.0.0.0:9000")
	gw := netip.MustParsePrefix("172.18.0.0/16")
	ports := []HostPort{
		{Published: 443, Target: 9000, Backend: netip.MustParseAddr("172.18.0.2")},
		{Published: 8443, Target: 9000, Backend: netip.MustParseAddr("172.18.0.2"), Addr: netip.MustParseAddr("10.203.0.5")},
	}
	if changed, err := SyncHostPorts(host, ports, gw); err != nil || !changed {
		t.Fatalf("SyncHostPorts: %v, %v; want changed", changed, err)
	}
	if changed, err := SyncHostPorts(host, ports, gw); err != nil || changed {
		t.Errorf("SyncHostPorts again: %v, %v; want nothing changed", changed, err)
	}
	for _, tc := range []struct{ name, ns, addr, seen string }{
		{"from client", client, "10.203.0.1:443", "10.203.0.2"},
		{"from client to the bound address", client, "10.203.0.5:8443", "10.203.0.2"},
		{"from host", host, "10.203.0.1:443", "10.203.0.1"},
		{"from host localhost", host, "127.0.0.1:443", "172.18.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for a := range dialAll(t, tc.ns, tc.addr, 3) {
				var local, remote string
				fmt.Sscan(a, &local, &remote)
				if ap, err := netip.ParseAddrPort(remote); err != nil || ap.Addr() != netip.MustParseAddr(tc.seen) || local != "172.18.0.2:9000" {
					t.Errorf("task answered on %s and saw %s, want 172.18.0.2:9000 and %s", local, remote, tc.seen)
				}
			}
		})
	}
	// UDP: the datagram reaches the task, which sees the client, and the answer comes back.
	var pc net.PacketConn
	if err := inNetns(task, func() (err error) { pc, err = net.ListenPacket("udp4", "0.0.0.0:9053"); return err }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(from.String()), from)
		}
	}()
	if _, err := SyncHostPorts(host, append(ports, HostPort{Protocol: "udp", Published: 53, Target: 9053, Backend: netip.MustParseAddr("172.18.0.2")}), gw); err != nil {
		t.Fatal(err)
	}
	var answer string
	if err := inNetns(client, func() error {
		c, err := net.Dial("udp4", "10.203.0.1:53")
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("who")); err != nil {
			return err
		}
		b := make([]byte, 64)
		n, err := c.Read(b)
		answer = string(b[:n])
		return err
	}); err != nil {
		t.Errorf("udp host port: %v", err)
	} else if ap, err := netip.ParseAddrPort(answer); err != nil || ap.Addr() != netip.MustParseAddr("10.203.0.2") {
		t.Errorf("udp host port: the task saw %q, want 10.203.0.2", answer)
	}
	if err := dialErr(t, client, "10.203.0.1:8443", 3*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial 10.203.0.1:8443 (bound on 10.203.0.5 only): got %v, want %v", err, syscall.ECONNREFUSED)
	}
	if _, err := SyncHostPorts(host, append(ports, HostPort{Published: 443, Target: 1, Backend: netip.MustParseAddr("172.18.0.3"), Addr: netip.MustParseAddr("10.203.0.5")}), gw); !errors.Is(err, ErrInvalid) {
		t.Errorf("a clashing host port: got %v, want ErrInvalid", err)
	}
	if changed, err := SyncHostPorts(host, nil, gw); err != nil || !changed {
		t.Fatalf("SyncHostPorts(nil): %v, %v", changed, err)
	}
	if n, err := ListRules(host); err != nil || n != 0 {
		t.Errorf("ListRules after removing: got %d, %v, want 0", n, err)
	}
}

func linkIndex(t *testing.T, h *netlink.Handle, name string) int {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func setMAC(t *testing.T, h *netlink.Handle, name, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetHardwareAddr(l, hw); err != nil {
		t.Fatalf("set MAC of %s: %v", name, err)
	}
}

// veth links namespace a (handle ha) to namespace b (handle hb, path pathB) with a veth pair
// named nameA in a and nameB in b, addressed addrA and addrB, both up.
func veth(t *testing.T, ha, hb *netlink.Handle, pathB, nameA, nameB, addrA, addrB string) {
	t.Helper()
	tmp := fmt.Sprintf("lbt%d", netnsSeq.Add(1))
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA}, PeerName: tmp}
	if err := ha.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", nameA, err)
	}
	peer, err := ha.LinkByName(tmp)
	if err != nil {
		t.Fatalf("veth peer: %v", err)
	}
	nsB, err := netnsFromPath(pathB)
	if err != nil {
		t.Fatal(err)
	}
	defer nsB.Close()
	if err := ha.LinkSetNsFd(peer, int(nsB)); err != nil {
		t.Fatalf("move veth peer: %v", err)
	}
	peer, err = hb.LinkByName(tmp)
	if err != nil {
		t.Fatalf("veth peer in b: %v", err)
	}
	if err := hb.LinkSetName(peer, nameB); err != nil {
		t.Fatalf("rename veth peer: %v", err)
	}
	addAddr(t, ha, nameA, addrA)
	addAddr(t, hb, nameB, addrB)
	for _, x := range []struct {
		h    *netlink.Handle
		name string
	}{{ha, nameA}, {hb, nameB}} {
		l, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatalf("up %s: %v", x.name, err)
		}
	}
}
