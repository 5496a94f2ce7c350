package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/shoal-dev/shoal/internal/testenv"
)

var netnsSeq atomic.Int64

// testNetns creates a named netns with lo up, deleted at cleanup, and returns its path and
// a handle to it. It skips the test unless run as root.
func testNetns(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	testenv.Root(t)
	name := fmt.Sprintf("shoal-dnstest-%d-%d", os.Getpid(), netnsSeq.Add(1))
	// NewNamed moves the thread into the new netns: a locked thread, moved back; one that
	// cannot move back stays locked, so Go ends it.
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{netns.None(), err}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			ch <- result{ns, errors.Join(err, serr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ns, err}
	}()
	res := <-ch
	ns, err := res.ns, res.err
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo in %s: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	return "/run/netns/" + name, ns
}

// fakeUpstream serves, inside ns on 127.0.0.2, UDP and TCP on one port:
// ext.example. A 192.0.2.1; big.example. truncated over UDP and 40 A records over TCP;
// NXDOMAIN for the rest. It returns its address.
func fakeUpstream(t *testing.T, ns netns.NsHandle) string {
	t.Helper()
	socks, err := inNetns(ns, func() (sockets, error) {
		pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
		if err != nil {
			return sockets{}, err
		}
		ln, err := net.Listen("tcp4", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			return sockets{}, err
		}
		return sockets{pc, ln}, nil
	})
	if err != nil {
		t.Fatalf("fake upstream sockets: %v", err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_, udp := w.LocalAddr().(*net.UDPAddr)
		resp := new(dns.Msg).SetReply(req)
		q := req.Question[0]
		switch {
		case q.Name == "ext.example." && q.Qtype == dns.TypeA:
			resp.Answer = append(resp.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.IPv4(192, 0, 2, 1),
			})
		case q.Name == "big.example." && udp:
			resp.Truncated = true
		case q.Name == "big.example.":
			for i := range 40 {
				resp.Answer = append(resp.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(198, 51, 100, byte(i+1)),
				})
			}
		default:
			resp.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(resp)
	})
	for _, srv := range []*dns.Server{{PacketConn: socks.pc, Handler: handler}, {Listener: socks.ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return socks.pc.LocalAddr().String()
}

// query asks the resolver at 127.0.0.11:53 from inside ns over network (udp or tcp).
func query(t *testing.T, ns netns.NsHandle, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	conn, err := inNetns(ns, func() (net.Conn, error) { return net.Dial(network, "127.0.0.11:53") })
	if err != nil {
		t.Fatalf("dial resolver: %v", err)
	}
	defer conn.Close()
	m := new(dns.Msg).SetQuestion(name, qtype)
	m.SetEdns0(dns.DefaultMsgSize, false)
	c := &dns.Client{Net: network}
	resp, _, err := c.ExchangeWithConn(m, &dns.Conn{Conn: conn})
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

// answerAddrs returns the A and AAAA addresses of resp, sorted.
func answerAddrs(resp *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range resp.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			a, _ := netip.AddrFromSlice(rr.A)
			out = append(out, a.Unmap())
		case *dns.AAAA:
			a, _ := netip.AddrFromSlice(rr.AAAA)
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

type check struct {
	network, name string
	qtype         uint16
	rcode         int
	want          []string
}

func runChecks(t *testing.T, ns netns.NsHandle, phase string, checks []check) {
	t.Helper()
	for _, c := range checks {
		t.Run(fmt.Sprintf("%s/%s %s %s", phase, c.network, c.name, dns.TypeToString[c.qtype]), func(t *testing.T) {
			resp := query(t, ns, c.network, c.name, c.qtype)
			if resp.Rcode != c.rcode {
				t.Fatalf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[c.rcode])
			}
			if got, want := answerAddrs(resp), addrs(t, c.want...); !slices.Equal(got, want) {
				t.Errorf("answer = %v, want %v", got, want)
			}
			if resp.Truncated {
				t.Errorf("answer truncated")
			}
		})
	}
}

func TestResolverInNetns(t *testing.T) {
	path, ns := testNetns(t)
	upstream := fakeUpstream(t, ns)
	table := NewTable()
	table.Set(testRecords(t))
	r, err := Start(path, []string{"front", "back"}, table, []string{upstream}, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { r.Close() })

	big := make([]string, 40)
	for i := range big {
		big[i] = fmt.Sprintf("198.51.100.%d", i+1)
	}
	runChecks(t, ns, "initial", []check{
		{"udp", "web.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.2", "10.0.2.2"}},
		{"tcp", "WEB.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.2", "10.0.2.2"}},
		{"udp", "web.back.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.2.2"}},
		{"udp", "tasks.web.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.3", "10.0.1.4", "10.0.2.3"}},
		{"tcp", "tasks.web.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.3", "10.0.1.4", "10.0.2.3"}},
		{"udp", "db.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.2.5", "10.0.2.6"}},
		{"udp", "web.", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"udp", "tasks.idle.", dns.TypeA, dns.RcodeSuccess, nil},
		{"udp", "ext.example.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}},
		{"tcp", "ext.example.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}},
		{"udp", "hidden.", dns.TypeA, dns.RcodeNameError, nil},
		{"udp", "big.example.", dns.TypeA, dns.RcodeSuccess, big}, // truncated upstream, retried over TCP
	})

	t.Run("local answer fields", func(t *testing.T) {
		resp := query(t, ns, "udp", "tasks.web.", dns.TypeA)
		if !resp.Authoritative {
			t.Errorf("authoritative = false, want true")
		}
		for _, rr := range resp.Answer {
			if rr.Header().Ttl != answerTTL || rr.Header().Name != "tasks.web." {
				t.Errorf("record %v, want name tasks.web. and TTL %d", rr, answerTTL)
			}
		}
	})

	// The agent updates the table and the task joins a network: answers change at once.
	recs := testRecords(t)
	recs[0].Tasks = append(recs[0].Tasks, netip.MustParseAddr("10.0.1.5"))
	recs = slices.Delete(recs, 2, 3) // db removed
	table.Set(recs)
	r.SetNetworks([]string{"front", "other"})
	runChecks(t, ns, "updated", []check{
		{"udp", "tasks.web.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.3", "10.0.1.4", "10.0.1.5"}},
		{"udp", "web.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.2"}},
		{"udp", "hidden.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.3.2"}},
		{"udp", "db.", dns.TypeA, dns.RcodeNameError, nil},
	})

	// Close releases the sockets: a resolver without upstreams takes the address again.
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r2, err := Start(path, []string{"front"}, table, nil, nil)
	if err != nil {
		t.Fatalf("Start again: %v", err)
	}
	t.Cleanup(func() { r2.Close() })
	runChecks(t, ns, "no upstream", []check{
		{"udp", "web.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.1.2"}},
		{"udp", "ext.example.", dns.TypeA, dns.RcodeServerFailure, nil},
	})
}

func TestResolverShufflesTasks(t *testing.T) {
	path, ns := testNetns(t)
	table := NewTable()
	var tasks []netip.Addr
	for i := range 8 {
		tasks = append(tasks, netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + i)}))
	}
	table.Set([]Record{{Network: "front", Service: "web", Tasks: tasks}})
	r, err := Start(path, []string{"front"}, table, nil, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	// 8! orders: the chance that 20 answers all come in one order is negligible.
	first := ""
	for range 20 {
		got := fmt.Sprint(query(t, ns, "udp", "web.", dns.TypeA).Answer)
		if first == "" {
			first = got
		} else if got != first {
			return
		}
	}
	t.Errorf("20 answers in the same order %s, want shuffled", first)
}

func TestResolverTruncatesLocalAnswersOverUDP(t *testing.T) {
	path, ns := testNetns(t)
	table := NewTable()
	var tasks []netip.Addr
	for i := range 300 {
		tasks = append(tasks, netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(1 + i%250)}))
	}
	table.Set([]Record{{Network: "front", Service: "web", Tasks: tasks}})
	r, err := Start(path, []string{"front"}, table, nil, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	udp := query(t, ns, "udp", "tasks.web.", dns.TypeA)
	if !udp.Truncated || len(udp.Answer) >= 300 {
		t.Errorf("udp: truncated = %v with %d records, want truncated", udp.Truncated, len(udp.Answer))
	}
	if tcp := query(t, ns, "tcp", "tasks.web.", dns.TypeA); tcp.Truncated || len(tcp.Answer) != 300 {
		t.Errorf("tcp: truncated = %v with %d records, want 300 records", tcp.Truncated, len(tcp.Answer))
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start("/nonexistent/netns", nil, NewTable(), nil, nil); err == nil {
		t.Error("Start in a missing netns: no error")
	}
	if _, err := Start("/proc/self/ns/net", nil, nil, nil, nil); err == nil {
		t.Error("Start without a table: no error")
	}
}
