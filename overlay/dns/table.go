package dns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Record is what one service contributes to one network's discovery.
type Record struct {
	// Network identifies the network: any key (ID or name) as long as the resolvers'
	// network lists use the same one.
	Network string
	// Service is the service name; lookups are case-insensitive.
	Service string
	// VIP is the service's virtual IP on Network; the zero Addr means dnsrr mode, where
	// SERVICE resolves to the task addresses.
	VIP netip.Addr
	// Tasks are the addresses on Network of the service's running tasks only: the caller
	// filters, the table does not know task states.
	Tasks []netip.Addr
}

type entry struct {
	network string
	vip     netip.Addr
	tasks   []netip.Addr // sorted, unique
}

// Table maps service names to addresses per network. It is safe for concurrent use.
type Table struct {
	mu       sync.RWMutex
	services map[string][]entry // lower-case service name -> one entry per network
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{services: map[string][]entry{}}
}

// Set replaces the whole content of the table with records. Records for the same service
// and network are merged. The table keeps its own copies.
func (t *Table) Set(records []Record) {
	services := make(map[string][]entry, len(records))
	for _, rec := range records {
		name := strings.ToLower(strings.TrimSuffix(rec.Service, "."))
		if name == "" {
			continue
		}
		entries := services[name]
		i := slices.IndexFunc(entries, func(e entry) bool { return e.network == rec.Network })
		if i < 0 {
			entries = append(entries, entry{network: rec.Network})
			i = len(entries) - 1
		}
		e := &entries[i]
		if !e.vip.IsValid() && rec.VIP.IsValid() {
			e.vip = rec.VIP.Unmap()
		}
		for _, a := range rec.Tasks {
			if a.IsValid() {
				e.tasks = append(e.tasks, a.Unmap())
			}
		}
		services[name] = entries
	}
	for _, entries := range services {
		for i := range entries {
			slices.SortFunc(entries[i].tasks, netip.Addr.Compare)
			entries[i].tasks = slices.Compact(entries[i].tasks)
		}
	}
	t.mu.Lock()
	t.services = services
	t.mu.Unlock()
}

// Lookup resolves name as seen by a task attached to networks. name is case-insensitive,
// with or without the trailing dot:
//
//   - SERVICE: the service's VIP on each shared network, or its running task addresses on
//     networks where it has no VIP (dnsrr);
//   - tasks.SERVICE: the running task addresses on every shared network;
//   - SERVICE.NETWORK and tasks.SERVICE.NETWORK: the same, on that one network only.
//
// ok is false when name is not a service on any of networks; ok is true with no addresses
// for a known service without running tasks. Addresses come out sorted; callers shuffle.
func (t *Table) Lookup(networks []string, name string) (addrs []netip.Addr, ok bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return nil, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if addrs, ok := t.lookup(networks, name, false); ok {
		return addrs, true
	}
	if svc, found := strings.CutPrefix(name, "tasks."); found {
		return t.lookup(networks, svc, true)
	}
	return nil, false
}

// lookup resolves SERVICE, then SERVICE.NETWORK, for name. t.mu is held.
func (t *Table) lookup(networks []string, name string, tasksOnly bool) ([]netip.Addr, bool) {
	if addrs, ok := t.collect(networks, name, tasksOnly); ok {
		return addrs, true
	}
	for _, nw := range networks {
		if nw == "" {
			continue
		}
		svc, found := strings.CutSuffix(name, "."+strings.ToLower(nw))
		if !found || svc == "" {
			continue
		}
		if addrs, ok := t.collect([]string{nw}, svc, tasksOnly); ok {
			return addrs, true
		}
	}
	return nil, false
}

// collect gathers the addresses of service on networks, in the order of networks.
func (t *Table) collect(networks []string, service string, tasksOnly bool) ([]netip.Addr, bool) {
	entries, ok := t.services[service]
	if !ok {
		return nil, false
	}
	var addrs []netip.Addr
	found := false
	for i, nw := range networks {
		if slices.Contains(networks[:i], nw) {
			continue
		}
		for _, e := range entries {
			if e.network != nw {
				continue
			}
			found = true
			if !tasksOnly && e.vip.IsValid() {
				addrs = append(addrs, e.vip)
			} else {
				addrs = append(addrs, e.tasks...)
			}
		}
	}
	if !found {
		return nil, false
	}
	// A task on two shared networks has two addresses; an address is listed once.
	seen := make(map[netip.Addr]bool, len(addrs))
	addrs = slices.DeleteFunc(addrs, func(a netip.Addr) bool {
		dup := seen[a]
		seen[a] = true
		return dup
	})
	return addrs, true
}
