package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"
)

// ListenAddr is the address the resolver answers on inside a task netns, as in Docker.
const ListenAddr = "127.0.0.11"

// answerTTL is the TTL of local answers: 0, so no client caches them and a change in the
// table shows at the next query (Docker uses 600).
const answerTTL = 0

// forwardTimeout bounds one exchange with one upstream.
const forwardTimeout = 2 * time.Second

// ErrNoTable is returned by Start without a table.
var ErrNoTable = errors.New("dns: no table")

// Resolver answers DNS queries on 127.0.0.11:53 (UDP and TCP) inside one task netns.
type Resolver struct {
	logger   *slog.Logger
	table    *Table
	upstream []string
	ns       netns.NsHandle // the task netns, for sockets to the upstreams

	ctx    context.Context // canceled by Close: ends forwarding in flight
	cancel context.CancelFunc
	udp    *dns.Server
	tcp    *dns.Server
	wg     sync.WaitGroup // the two serve goroutines

	mu       sync.RWMutex
	networks []string

	closeOnce sync.Once
	closeErr  error
}

// Start opens 127.0.0.11:53 UDP and TCP inside the network namespace at netnsPath (its lo
// must be up) and answers from table for a task on networks. Other names are forwarded to
// upstream ("ip:port", "ip" meaning port 53), from inside the netns, in order; with no
// upstream they get SERVFAIL. Stop it with Close.
func Start(netnsPath string, networks []string, table *Table, upstream []string, logger *slog.Logger) (*Resolver, error) {
	if table == nil {
		return nil, ErrNoTable
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "dns", "netns", netnsPath)
	var ups []string
	for _, u := range upstream {
		up, err := normalizeUpstream(u)
		if err != nil {
			logger.Warn("skip upstream", "upstream", u, "err", err)
			continue
		}
		ups = append(ups, up)
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	addr := net.JoinHostPort(ListenAddr, "53")
	socks, err := inNetns(ns, func() (sockets, error) {
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return sockets{}, fmt.Errorf("listen udp %s: %w", addr, err)
		}
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			pc.Close()
			return sockets{}, fmt.Errorf("listen tcp %s: %w", addr, err)
		}
		return sockets{pc, ln}, nil
	})
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("dns resolver in %s: %w", netnsPath, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Resolver{
		logger:   logger,
		table:    table,
		upstream: ups,
		ns:       ns,
		ctx:      ctx,
		cancel:   cancel,
		networks: slices.Clone(networks),
	}
	h := dns.HandlerFunc(r.serve)
	r.udp = &dns.Server{PacketConn: socks.pc, Handler: h, UDPSize: dns.DefaultMsgSize}
	r.tcp = &dns.Server{Listener: socks.ln, Handler: h}
	if err := r.activate(r.udp); err != nil {
		cancel()
		return nil, errors.Join(err, socks.Close(), ns.Close())
	}
	if err := r.activate(r.tcp); err != nil {
		cancel()
		return nil, errors.Join(err, socks.ln.Close(), r.udp.Shutdown(), ns.Close())
	}
	logger.Debug("dns resolver started", "networks", networks, "upstreams", ups)
	return r, nil
}

// activate serves srv in a goroutine and returns once it is serving.
func (r *Resolver) activate(srv *dns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	failed := make(chan error, 1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := srv.ActivateAndServe(); err != nil {
			failed <- err
			r.logger.Error("dns server stopped", "err", err)
		}
	}()
	select {
	case <-started:
		return nil
	case err := <-failed:
		return fmt.Errorf("serve dns: %w", err)
	}
}

type sockets struct {
	pc net.PacketConn
	ln net.Listener
}

func (s sockets) Close() error { return errors.Join(s.pc.Close(), s.ln.Close()) }

func normalizeUpstream(u string) (string, error) {
	host, port, err := net.SplitHostPort(u)
	if err != nil {
		host, port = u, "53"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("upstream %q: %w", u, err)
	}
	up := net.JoinHostPort(a.Unmap().String(), port)
	if up == net.JoinHostPort(ListenAddr, "53") {
		return "", fmt.Errorf("upstream %q: the resolver itself", u)
	}
	return up, nil
}

// SetNetworks replaces the networks of the task: only services on them are answered.
func (r *Resolver) SetNetworks(networks []string) {
	networks = slices.Clone(networks)
	r.mu.Lock()
	r.networks = networks
	r.mu.Unlock()
}

func (r *Resolver) currentNetworks() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.networks
}

// Close stops answering, closes the sockets and waits for queries in flight. It is
// idempotent.
func (r *Resolver) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		var errs []error
		for _, srv := range []*dns.Server{r.udp, r.tcp} {
			if err := srv.Shutdown(); err != nil {
				errs = append(errs, fmt.Errorf("shutdown dns server: %w", err))
			}
		}
		r.wg.Wait()
		if err := r.ns.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close netns: %w", err))
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// serve answers one query: from the table when the name is a service on the task's
// networks, otherwise from the upstreams.
func (r *Resolver) serve(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.LocalAddr().(*net.UDPAddr)
	var resp *dns.Msg
	switch {
	case req.Response:
		return // never answer answers
	case req.Opcode != dns.OpcodeQuery:
		resp = new(dns.Msg).SetRcode(req, dns.RcodeNotImplemented)
	case len(req.Question) != 1:
		resp = new(dns.Msg).SetRcode(req, dns.RcodeFormatError)
	default:
		q := req.Question[0]
		if addrs, ok := r.lookup(q); ok {
			resp = localAnswer(req, q, addrs)
		} else {
			resp = r.forward(req)
		}
	}
	size := dns.MaxMsgSize
	if udp {
		size = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
	}
	resp.Truncate(size)
	if err := w.WriteMsg(resp); err != nil {
		r.logger.Debug("write dns answer", "name", qname(req), "err", err)
	}
}

func (r *Resolver) lookup(q dns.Question) ([]netip.Addr, bool) {
	if q.Qclass != dns.ClassINET {
		return nil, false
	}
	return r.table.Lookup(r.currentNetworks(), q.Name)
}

// localAnswer answers q for a known name: A records for its IPv4 addresses, AAAA for IPv6
// ones (none on Shoal's IPv4 overlay, so AAAA is an empty NOERROR), nothing for other types.
// The order is shuffled per answer for rudimentary balancing across tasks.
func localAnswer(req *dns.Msg, q dns.Question, addrs []netip.Addr) *dns.Msg {
	resp := new(dns.Msg).SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: answerTTL}
	}
	for _, a := range addrs {
		switch {
		case a.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
		case a.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
			resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	rand.Shuffle(len(resp.Answer), func(i, j int) {
		resp.Answer[i], resp.Answer[j] = resp.Answer[j], resp.Answer[i]
	})
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(dns.DefaultMsgSize, false)
	}
	return resp
}

// forward asks the upstreams in order, moving on after an error, SERVFAIL or REFUSED.
func (r *Resolver) forward(req *dns.Msg) *dns.Msg {
	q := req.Copy()
	q.Id = dns.Id()
	var last *dns.Msg
	for _, up := range r.upstream {
		resp, err := r.exchange(q, up)
		if err != nil {
			r.logger.Debug("forward dns query", "name", qname(req), "upstream", up, "err", err)
			continue
		}
		resp.Id = req.Id
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			last = resp
			continue
		}
		return resp
	}
	if last != nil {
		return last
	}
	return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
}

// exchange asks one upstream over UDP, then over TCP if the answer was truncated.
func (r *Resolver) exchange(q *dns.Msg, up string) (*dns.Msg, error) {
	resp, err := r.exchangeOver("udp", q, up)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	full, err := r.exchangeOver("tcp", q, up)
	if err != nil {
		// Pass the truncated answer on: the client may retry over TCP itself.
		r.logger.Debug("forward dns query over tcp", "name", qname(q), "upstream", up, "err", err)
		return resp, nil
	}
	return full, nil
}

func (r *Resolver) exchangeOver(network string, q *dns.Msg, up string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(r.ctx, forwardTimeout)
	defer cancel()
	// Dial inside the task netns: the upstream is reached the way the task would reach it.
	conn, err := inNetns(r.ns, func() (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, up)
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	c := &dns.Client{Net: network}
	resp, _, err := c.ExchangeWithConnContext(ctx, q, &dns.Conn{Conn: conn})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", network, up, err)
	}
	return resp, nil
}

func qname(m *dns.Msg) string {
	if len(m.Question) == 0 {
		return ""
	}
	return m.Question[0].Name
}
