// Package overlaytest has test doubles for overlay.Netlink: Fake, an in-memory model of the
// host and task namespaces, and Recorder, which logs the changing calls made to any Netlink.
package overlaytest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/shoal-dev/shoal/overlay"
)

// Recorder wraps a Netlink and records every call that changes state, one line per call.
// Reads pass through unrecorded.
type Recorder struct {
	overlay.Netlink
	mu    sync.Mutex
	calls []string
}

// NewRecorder records the changes made through nl.
func NewRecorder(nl overlay.Netlink) *Recorder { return &Recorder{Netlink: nl} }

// Calls returns the calls recorded since the last Reset.
func (r *Recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Reset forgets the recorded calls.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}

func (r *Recorder) record(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

func (r *Recorder) AddBridge(name string, mtu int) error {
	r.record("AddBridge %s mtu=%d", name, mtu)
	return r.Netlink.AddBridge(name, mtu)
}

func (r *Recorder) AddVXLAN(name string, v overlay.VXLAN, mtu int, master string) error {
	r.record("AddVXLAN %s vni=%d local=%s port=%d learning=%t mtu=%d master=%s", name, v.VNI, v.Local, v.Port, v.Learning, mtu, master)
	return r.Netlink.AddVXLAN(name, v, mtu, master)
}

func (r *Recorder) AddVeth(name, master, peerNetns, peer string, mtu int) error {
	r.record("AddVeth %s master=%s peer=%s:%s mtu=%d", name, master, peerNetns, peer, mtu)
	return r.Netlink.AddVeth(name, master, peerNetns, peer, mtu)
}

func (r *Recorder) SetMaster(name, master string) error {
	r.record("SetMaster %s %s", name, master)
	return r.Netlink.SetMaster(name, master)
}

func (r *Recorder) SetIsolated(name string) error {
	r.record("SetIsolated %s", name)
	return r.Netlink.SetIsolated(name)
}

func (r *Recorder) SetUp(name string) error {
	r.record("SetUp %s", name)
	return r.Netlink.SetUp(name)
}

func (r *Recorder) DeleteLink(name string) error {
	r.record("DeleteLink %s", name)
	return r.Netlink.DeleteLink(name)
}

func (r *Recorder) SetFDB(dev string, e overlay.FDBEntry) error {
	r.record("SetFDB %s %s -> %s", dev, e.MAC, e.VTEP)
	return r.Netlink.SetFDB(dev, e)
}

func (r *Recorder) DeleteFDB(dev string, e overlay.FDBEntry) error {
	r.record("DeleteFDB %s %s -> %s", dev, e.MAC, e.VTEP)
	return r.Netlink.DeleteFDB(dev, e)
}

func (r *Recorder) SetHardwareAddr(name string, mac net.HardwareAddr) error {
	r.record("SetHardwareAddr %s %s", name, mac)
	return r.Netlink.SetHardwareAddr(name, mac)
}

func (r *Recorder) AddLinkAddr(name string, addr netip.Prefix) error {
	r.record("AddLinkAddr %s %s", name, addr)
	return r.Netlink.AddLinkAddr(name, addr)
}

func (r *Recorder) DeleteLinkAddr(name string, addr netip.Prefix) error {
	r.record("DeleteLinkAddr %s %s", name, addr)
	return r.Netlink.DeleteLinkAddr(name, addr)
}

func (r *Recorder) ConfigureIface(netns, name string, want overlay.Iface) error {
	gw := ""
	if want.Gateway.IsValid() {
		gw = " gw=" + want.Gateway.String()
	}
	r.record("ConfigureIface %s:%s name=%s mac=%s mtu=%d addrs=%v up=%t%s", netns, name, want.Name, want.MAC, want.MTU, want.Addrs, want.Up, gw)
	return r.Netlink.ConfigureIface(netns, name, want)
}

func (r *Recorder) SetNeighbor(netns, dev string, n overlay.Neighbor) error {
	r.record("SetNeighbor %s:%s %s %s", netns, dev, n.IP, n.MAC)
	return r.Netlink.SetNeighbor(netns, dev, n)
}

func (r *Recorder) DeleteNeighbor(netns, dev string, n overlay.Neighbor) error {
	r.record("DeleteNeighbor %s:%s %s %s", netns, dev, n.IP, n.MAC)
	return r.Netlink.DeleteNeighbor(netns, dev, n)
}

// Fake is an in-memory kernel: host links, VXLAN FDBs, task namespaces with their links and
// neighbours. Veth pairs die together, as in the kernel. Safe for concurrent use.
type Fake struct {
	mu        sync.Mutex
	mtu       int
	nextIndex int
	links     map[string]*hostLink // host namespace, by name
	fdb       map[string][]overlay.FDBEntry
	netns     map[string]*fakeNetns // by path
	fail      map[string]error      // method name -> error for its next call
}

type hostLink struct {
	overlay.Link
	isolated        bool
	peerNetns, peer string // veth: where the other end is
	addrs           []netip.Prefix
	neighs          []overlay.Neighbor
}

type fakeNetns struct {
	ifaces map[string]*overlay.Iface
	neighs map[string][]overlay.Neighbor // by link name
}

// NewFake returns an empty Fake whose underlay link has MTU 1500.
func NewFake() *Fake {
	return &Fake{
		mtu:   1500,
		links: map[string]*hostLink{}, fdb: map[string][]overlay.FDBEntry{},
		netns: map[string]*fakeNetns{}, fail: map[string]error{},
	}
}

// AddNetns makes a task namespace at path, as NewTaskNetns would.
func (f *Fake) AddNetns(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.netns[path] = &fakeNetns{ifaces: map[string]*overlay.Iface{}, neighs: map[string][]overlay.Neighbor{}}
}

// DeleteNetns removes a task namespace and the veths with an end in it.
func (f *Fake) DeleteNetns(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.netns, path)
	for name, l := range f.links {
		if l.peerNetns == path {
			delete(f.links, name)
		}
	}
}

// FailNext makes the next call of the named method (e.g. "ConfigureIface") return err.
func (f *Fake) FailNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

func (f *Fake) failing(method string) error {
	err := f.fail[method]
	delete(f.fail, method)
	return err
}

// PutLink adds or replaces a host link as is, to set up drift or leftovers.
func (f *Fake) PutLink(l overlay.Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextIndex++
	l.Index = f.nextIndex
	f.links[l.Name] = &hostLink{Link: l}
}

// Link returns a host link.
func (f *Fake) Link(name string) (overlay.Link, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.links[name]
	if !ok {
		return overlay.Link{}, false
	}
	return l.Link, true
}

// Modify changes a host link in place, to simulate drift.
func (f *Fake) Modify(name string, fn func(*overlay.Link)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.links[name]; ok {
		fn(&l.Link)
	}
}

// LinkNames lists the host links, sorted.
func (f *Fake) LinkNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.links {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// NetnsIfaces lists the links in a task namespace, sorted.
func (f *Fake) NetnsIfaces(path string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns, ok := f.netns[path]
	if !ok {
		return nil
	}
	var names []string
	for n := range ns.ifaces {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (f *Fake) Links(prefix string) ([]overlay.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("Links"); err != nil {
		return nil, err
	}
	var res []overlay.Link
	for _, l := range f.links {
		if strings.HasPrefix(l.Name, prefix) {
			res = append(res, l.Link)
		}
	}
	slices.SortFunc(res, func(a, b overlay.Link) int { return cmp.Compare(a.Name, b.Name) })
	return res, nil
}

func (f *Fake) UnderlayMTU(netip.Addr) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mtu, f.failing("UnderlayMTU")
}

func (f *Fake) add(l overlay.Link, master string) (*hostLink, error) {
	if _, ok := f.links[l.Name]; ok {
		return nil, fmt.Errorf("link %s: file exists", l.Name)
	}
	if master != "" {
		m, ok := f.links[master]
		if !ok {
			return nil, fmt.Errorf("master %s: %w", master, overlay.ErrNotFound)
		}
		l.MasterIndex = m.Index
	}
	f.nextIndex++
	l.Index = f.nextIndex
	hl := &hostLink{Link: l}
	f.links[l.Name] = hl
	return hl, nil
}

func (f *Fake) AddBridge(name string, mtu int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("AddBridge"); err != nil {
		return err
	}
	_, err := f.add(overlay.Link{Name: name, Kind: "bridge", MTU: mtu, Up: true}, "")
	return err
}

func (f *Fake) AddVXLAN(name string, v overlay.VXLAN, mtu int, master string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("AddVXLAN"); err != nil {
		return err
	}
	_, err := f.add(overlay.Link{Name: name, Kind: "vxlan", MTU: mtu, Up: true, VXLAN: v}, master)
	return err
}

func (f *Fake) AddVeth(name, master, peerNetns, peer string, mtu int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("AddVeth"); err != nil {
		return err
	}
	ns, ok := f.netns[peerNetns]
	if !ok {
		return fmt.Errorf("open netns %s: no such file or directory", peerNetns)
	}
	if _, ok := ns.ifaces[peer]; ok {
		return fmt.Errorf("link %s in %s: file exists", peer, peerNetns)
	}
	hl, err := f.add(overlay.Link{Name: name, Kind: "veth", MTU: mtu, Up: true}, master)
	if err != nil {
		return err
	}
	hl.peerNetns, hl.peer = peerNetns, peer
	ns.ifaces[peer] = &overlay.Iface{Name: peer, MTU: mtu}
	return nil
}

func (f *Fake) get(name string) (*hostLink, error) {
	l, ok := f.links[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, overlay.ErrNotFound)
	}
	return l, nil
}

func (f *Fake) SetMaster(name, master string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("SetMaster"); err != nil {
		return err
	}
	l, err := f.get(name)
	if err != nil {
		return err
	}
	m, err := f.get(master)
	if err != nil {
		return err
	}
	l.MasterIndex, l.isolated = m.Index, false // a new bridge port, with default flags
	return nil
}

func (f *Fake) SetIsolated(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("SetIsolated"); err != nil {
		return err
	}
	l, err := f.get(name)
	if err != nil {
		return err
	}
	if l.MasterIndex == 0 {
		return fmt.Errorf("set %s isolated: not a bridge port", name)
	}
	l.isolated = true
	return nil
}

// Isolated reports whether a host link is an isolated bridge port.
func (f *Fake) Isolated(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.links[name]
	return ok && l.isolated
}

func (f *Fake) SetUp(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("SetUp"); err != nil {
		return err
	}
	l, err := f.get(name)
	if err != nil {
		return err
	}
	l.Up = true
	return nil
}

func (f *Fake) DeleteLink(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("DeleteLink"); err != nil {
		return err
	}
	l, ok := f.links[name]
	if !ok {
		return nil
	}
	delete(f.links, name)
	delete(f.fdb, name)
	for _, o := range f.links {
		if o.MasterIndex == l.Index {
			o.MasterIndex, o.isolated = 0, false
		}
	}
	if ns, ok := f.netns[l.peerNetns]; ok {
		delete(ns.ifaces, l.peer)
		delete(ns.neighs, l.peer)
	}
	return nil
}

func (f *Fake) FDB(dev string) ([]overlay.FDBEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.get(dev); err != nil {
		return nil, err
	}
	return slices.Clone(f.fdb[dev]), nil
}

func (f *Fake) SetFDB(dev string, e overlay.FDBEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("SetFDB"); err != nil {
		return err
	}
	if _, err := f.get(dev); err != nil {
		return err
	}
	for i, o := range f.fdb[dev] {
		if bytes.Equal(o.MAC, e.MAC) {
			f.fdb[dev][i] = e
			return nil
		}
	}
	f.fdb[dev] = append(f.fdb[dev], e)
	return nil
}

func (f *Fake) DeleteFDB(dev string, e overlay.FDBEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("DeleteFDB"); err != nil {
		return err
	}
	n := len(f.fdb[dev])
	f.fdb[dev] = slices.DeleteFunc(f.fdb[dev], func(o overlay.FDBEntry) bool {
		return bytes.Equal(o.MAC, e.MAC) && o.VTEP == e.VTEP
	})
	if len(f.fdb[dev]) == n {
		return errors.New("fdb entry: no such file or directory")
	}
	return nil
}

// PutFDB adds an entry as is, to set up leftovers.
func (f *Fake) PutFDB(dev string, e overlay.FDBEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fdb[dev] = append(f.fdb[dev], e)
}

func (f *Fake) SetHardwareAddr(name string, mac net.HardwareAddr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("SetHardwareAddr"); err != nil {
		return err
	}
	l, err := f.get(name)
	if err != nil {
		return err
	}
	l.MAC = slices.Clone(mac)
	return nil
}

func (f *Fake) LinkAddrs(name string) ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.get(name)
	if err != nil {
		return nil, err
	}
	return slices.Clone(l.addrs), nil
}

func (f *Fake) AddLinkAddr(name string, addr netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("AddLinkAddr"); err != nil {
		return err
	}
	l, err := f.get(name)
	if err != nil {
		return err
	}
	if !slices.Contains(l.addrs, addr) {
		l.addrs = append(l.addrs, addr)
	}
	return nil
}

func (f *Fake) DeleteLinkAddr(name string, addr netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("DeleteLinkAddr"); err != nil {
		return err
	}
	l, err := f.get(name)
	if err != nil {
		return err
	}
	before := len(l.addrs)
	l.addrs = slices.DeleteFunc(l.addrs, func(a netip.Prefix) bool { return a == addr })
	if len(l.addrs) == before {
		return errors.New("address: cannot assign requested address")
	}
	return nil
}

// LinkAddrsOf returns the addresses of a host link.
func (f *Fake) LinkAddrsOf(name string) []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.links[name]; ok {
		return slices.Clone(l.addrs)
	}
	return nil
}

// neighList returns get and set for the neighbours of dev in the namespace at path ("" is
// the host's).
func (f *Fake) neighList(path, dev string) (func() []overlay.Neighbor, func([]overlay.Neighbor), error) {
	if path == "" {
		l, err := f.get(dev)
		if err != nil {
			return nil, nil, err
		}
		return func() []overlay.Neighbor { return l.neighs }, func(n []overlay.Neighbor) { l.neighs = n }, nil
	}
	ns, _, err := f.iface(path, dev)
	if err != nil {
		return nil, nil, err
	}
	return func() []overlay.Neighbor { return ns.neighs[dev] }, func(n []overlay.Neighbor) { ns.neighs[dev] = n }, nil
}

func (f *Fake) iface(path, name string) (*fakeNetns, *overlay.Iface, error) {
	ns, ok := f.netns[path]
	if !ok {
		return nil, nil, fmt.Errorf("open netns %s: no such file or directory", path)
	}
	l, ok := ns.ifaces[name]
	if !ok {
		return ns, nil, fmt.Errorf("%s: %w", name, overlay.ErrNotFound)
	}
	return ns, l, nil
}

func (f *Fake) Iface(path, name string) (overlay.Iface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, l, err := f.iface(path, name)
	if err != nil {
		return overlay.Iface{}, err
	}
	c := *l
	c.Addrs = slices.Clone(l.Addrs)
	return c, nil
}

// ModifyIface changes a link in a task namespace in place, to simulate drift.
func (f *Fake) ModifyIface(path, name string, fn func(*overlay.Iface)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, l, err := f.iface(path, name); err == nil {
		fn(l)
	}
}

func (f *Fake) ConfigureIface(path, name string, want overlay.Iface) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("ConfigureIface"); err != nil {
		return err
	}
	ns, l, err := f.iface(path, name)
	if err != nil {
		return err
	}
	if _, ok := ns.ifaces[want.Name]; ok && want.Name != name {
		return fmt.Errorf("rename %s to %s: file exists", name, want.Name)
	}
	delete(ns.ifaces, name)
	*l = want
	l.Addrs = slices.Clone(want.Addrs)
	ns.ifaces[want.Name] = l
	for _, hl := range f.links {
		if hl.peerNetns == path && hl.peer == name {
			hl.peer = want.Name
		}
	}
	return nil
}

func (f *Fake) Neighbors(path, dev string) ([]overlay.Neighbor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	get, _, err := f.neighList(path, dev)
	if err != nil {
		return nil, err
	}
	return slices.Clone(get()), nil
}

func (f *Fake) SetNeighbor(path, dev string, n overlay.Neighbor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("SetNeighbor"); err != nil {
		return err
	}
	get, set, err := f.neighList(path, dev)
	if err != nil {
		return err
	}
	list := get()
	for i, o := range list {
		if o.IP == n.IP {
			list[i] = n
			return nil
		}
	}
	set(append(list, n))
	return nil
}

func (f *Fake) DeleteNeighbor(path, dev string, n overlay.Neighbor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("DeleteNeighbor"); err != nil {
		return err
	}
	get, set, err := f.neighList(path, dev)
	if err != nil {
		return err
	}
	list := get()
	before := len(list)
	list = slices.DeleteFunc(list, func(o overlay.Neighbor) bool { return o.IP == n.IP })
	if len(list) == before {
		return errors.New("neighbour: no such file or directory")
	}
	set(list)
	return nil
}

// NeighborsOf returns "IP MAC" lines for a link in a task namespace ("" for a host link),
// sorted.
func (f *Fake) NeighborsOf(path, dev string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	get, _, err := f.neighList(path, dev)
	if err != nil {
		return nil
	}
	var res []string
	for _, n := range get() {
		res = append(res, n.IP.String()+" "+n.MAC.String())
	}
	slices.Sort(res)
	return res
}

// FDBOf returns "MAC -> VTEP" lines for a VXLAN device, sorted.
func (f *Fake) FDBOf(dev string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var res []string
	for _, e := range f.fdb[dev] {
		res = append(res, e.MAC.String()+" -> "+e.VTEP.String())
	}
	slices.Sort(res)
	return res
}

var _ overlay.Netlink = (*Fake)(nil)

// MAC parses a MAC address or panics; for test tables.
func MAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
