package dispatcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// assignmentWait bounds a long poll for assignments; under the client's
// 30 s answer timeout.
const assignmentWait = 15 * time.Second

// Assignments returns nodeID's tasks and network state once one of its
// tasks is newer than since or the network state differs from networkSum,
// or after assignmentWait with whatever is there.
func (d *Dispatcher) Assignments(ctx context.Context, nodeID string, since uint64, networkSum string) (api.Assignments, error) {
	if !d.active.Load() {
		return api.Assignments{}, ErrNotReady
	}
	read := func(tx store.ReadTx) (api.Assignments, bool) {
		out := api.Assignments{Index: d.cfg.Store.Index(), Tasks: tx.TasksOnNode(nodeID)}
		out.Network = networkState(tx, nodeID, out.Tasks)
		out.NetworkSum = sum(out.Network)
		changed := since == 0 || out.NetworkSum != networkSum
		for _, t := range out.Tasks {
			if t.Meta.Version > since {
				changed = true
			}
		}
		return out, changed
	}
	var out api.Assignments
	var changed bool
	events, cancel := d.cfg.Store.ViewAndWatch(func(tx store.ReadTx) { out, changed = read(tx) })
	defer cancel()
	if changed {
		return out, nil
	}
	timeout := time.NewTimer(assignmentWait)
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-timeout.C:
			d.cfg.Store.View(func(tx store.ReadTx) { out, _ = read(tx) })
			return out, nil
		case _, ok := <-events:
			if !ok {
				return out, errors.New("dispatcher: store watch closed")
			}
			d.cfg.Store.View(func(tx store.ReadTx) { out, changed = read(tx) })
			if changed {
				return out, nil
			}
		}
	}
}

// live reports whether a task holds its addresses: wanted running and not finished.
func live(t *api.Task) bool {
	return t.DesiredState == api.TaskRunning && !t.Status.State.Terminal() && t.NodeID != ""
}

// networkState gathers what node nodeID needs for the networks its tasks
// join and, once it has an ingress address, for the routing mesh: the
// ingress network, every node's ingress address as a peer and the
// published ports with their backends.
func networkState(tx store.ReadTx, nodeID string, local []*api.Task) api.NetworkState {
	var st api.NetworkState
	joined := map[string]bool{}
	for _, t := range local {
		if !live(t) {
			continue
		}
		for _, a := range t.Networks {
			joined[a.NetworkID] = true
		}
	}
	var ingress *api.Network
	for _, n := range tx.Networks() {
		if n.Spec.Ingress && (ingress == nil || n.ID < ingress.ID) {
			ingress = n
		}
	}
	if self := tx.Node(nodeID); self != nil && self.IngressAddr != "" && ingress != nil {
		joined[ingress.ID] = true
		st.IngressAddr = self.IngressAddr
	}
	if len(joined) == 0 {
		return st
	}
	for _, n := range tx.Networks() {
		if joined[n.ID] {
			st.Networks = append(st.Networks, n)
		}
	}
	mesh := ingress != nil && st.IngressAddr != ""
	nodeAddr := map[string]string{}
	for _, n := range tx.Nodes() {
		nodeAddr[n.ID] = n.Status.Addr
		if mesh && n.IngressAddr != "" {
			p, err := netip.ParsePrefix(n.IngressAddr)
			if err != nil {
				continue
			}
			st.Peers = append(st.Peers, api.NetworkPeer{
				NetworkAttachment: api.NetworkAttachment{NetworkID: ingress.ID, Addr: n.IngressAddr, MAC: api.MACFromIP(p.Addr())},
				NodeID:            n.ID, NodeAddr: n.Status.Addr,
			})
		}
	}
	backends := map[string][]api.NetworkAttachment{}
	for _, t := range tx.Tasks() {
		if !live(t) {
			continue
		}
		for _, a := range t.Networks {
			if !joined[a.NetworkID] {
				continue
			}
			st.Peers = append(st.Peers, api.NetworkPeer{NetworkAttachment: a, TaskID: t.ID, NodeAddr: nodeAddr[t.NodeID]})
			if t.Status.State == api.TaskRunning {
				backends[t.ServiceID] = append(backends[t.ServiceID], a)
			}
		}
	}
	if mesh {
		for _, svc := range tx.Services() {
			var addrs []string
			for _, a := range backends[svc.ID] {
				if a.NetworkID == ingress.ID {
					addrs = append(addrs, a.Addr)
				}
			}
			for _, p := range svc.Spec.Endpoint.Ports {
				st.Published = append(st.Published, api.PublishedPort{PortConfig: p, Backends: addrs})
			}
		}
	}
	for _, svc := range tx.Services() {
		on := false
		for _, id := range svc.Spec.Networks {
			on = on || joined[id]
		}
		if !on {
			continue
		}
		mode := svc.Spec.Endpoint.Mode
		if mode == "" {
			mode = api.EndpointVIP
		}
		st.Services = append(st.Services, api.ServiceNetwork{
			Name: svc.Spec.Name, Mode: mode, VIPs: svc.Endpoint.VIPs, Backends: backends[svc.ID],
		})
	}
	return st
}

// sum identifies a network state; the store's ordered reads make it stable.
func sum(st api.NetworkState) string {
	b, _ := json.Marshal(st)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// statusBatch is the updates that go into one raft write.
type statusBatch struct {
	nodeID  string
	updates []api.TaskStatusUpdate
	done    chan error
}

// ReportStatus queues a node's task status updates for the next batched
// write and returns once that write committed.
func (d *Dispatcher) ReportStatus(ctx context.Context, nodeID string, updates []api.TaskStatusUpdate) error {
	if !d.active.Load() {
		return ErrNotReady
	}
	b := statusBatch{nodeID: nodeID, updates: updates, done: make(chan error, 1)}
	select {
	case d.statusQueue <- b:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-b.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runStatusWriter writes queued status updates, many reports per raft write.
func (d *Dispatcher) runStatusWriter(ctx context.Context) {
	for {
		var batch []statusBatch
		select {
		case <-ctx.Done():
			return
		case b := <-d.statusQueue:
			batch = append(batch, b)
		}
		// Gather what else arrives while the first waits, up to a bound.
	gather:
		for len(batch) < 256 {
			select {
			case b := <-d.statusQueue:
				batch = append(batch, b)
			default:
				break gather
			}
		}
		err := d.writeStatus(ctx, batch)
		n := 0
		for _, b := range batch {
			n += len(b.updates)
			b.done <- err
		}
		d.batchSizes.Observe(float64(n))
	}
}

func (d *Dispatcher) writeStatus(ctx context.Context, batch []statusBatch) error {
	return d.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		for _, b := range batch {
			for _, u := range b.updates {
				t := tx.Task(u.TaskID)
				if t == nil || t.NodeID != b.nodeID {
					continue // removed meanwhile, or not this node's to report
				}
				// Only the agent moves a task past assigned, and only forward.
				if !t.Status.State.Before(u.Status.State) || u.Status.State.Before(api.TaskAccepted) {
					continue
				}
				t.Status = u.Status
				if err := tx.PutTask(t); err != nil {
					return fmt.Errorf("task %s: %w", t.ID, err)
				}
			}
		}
		return nil
	})
}
