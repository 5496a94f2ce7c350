package dispatcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

const (
	benchNodes = 1000
	benchTasks = 10000
)

// benchStore holds benchNodes ready nodes on the routing mesh and
// benchTasks running tasks of one published service, spread evenly: the
// worst case for the answer, since every node carries every task as an
// ingress peer.
func benchStore(b *testing.B) *store.Store {
	b.Helper()
	st := store.New(clock.Real{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	addr := func(i int) string {
		return netip.AddrFrom4([4]byte{10, 255, byte(i >> 8), byte(i)}).String() + "/16"
	}
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(st.Update(ctx, func(tx *store.Tx) error {
		if err := tx.PutNetwork(&api.Network{ID: "ing", Spec: api.NetworkSpec{Name: "ingress", Subnet: "10.255.0.0/16", Ingress: true}, VNI: 4096}); err != nil {
			return err
		}
		return tx.PutService(&api.Service{ID: "svc", Spec: api.ServiceSpec{Name: "web", Replicas: benchTasks,
			Endpoint: api.EndpointSpec{Ports: []api.PortConfig{{Published: 8080, Target: 80}}}}})
	}))
	for start := 0; start < benchNodes; start += 500 {
		must(st.Update(ctx, func(tx *store.Tx) error {
			for i := start; i < start+500 && i < benchNodes; i++ {
				n := &api.Node{ID: fmt.Sprintf("node%04d", i), Status: api.NodeStatus{State: api.NodeStateReady, Addr: fmt.Sprintf("192.168.%d.%d", i>>8, i&255)},
					IngressAddr: addr(i + 2)}
				if err := tx.PutNode(n); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	for start := 0; start < benchTasks; start += 500 {
		must(st.Update(ctx, func(tx *store.Tx) error {
			for i := start; i < start+500; i++ {
				t := &api.Task{ID: fmt.Sprintf("task%05d", i), ServiceID: "svc", Slot: uint64(i + 1), NodeID: fmt.Sprintf("node%04d", i%benchNodes),
					DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskRunning},
					Networks: []api.NetworkAttachment{{NetworkID: "ing", Addr: addr(benchNodes + 2 + i)}}}
				if err := tx.PutTask(t); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	return st
}

// BenchmarkAssignments measures one node's answer after a change of a
// task's state (which changes every mesh node's network state), at 1k
// nodes x 10k tasks. legacy is the read of the world per node the hub
// replaced; hub includes the change applied to the hub and the answers of
// all nodes, and reports the cost per node.
func BenchmarkAssignments(b *testing.B) {
	st := benchStore(b)
	nodeID := func(i int) string { return fmt.Sprintf("node%04d", i%benchNodes) }
	toggle := func(i int) store.Event {
		id := fmt.Sprintf("task%05d", i%benchTasks)
		if err := st.Update(context.Background(), func(tx *store.Tx) error {
			t := tx.Task(id)
			if t.Status.State == api.TaskRunning {
				t.Status.State = api.TaskStarting
			} else {
				t.Status.State = api.TaskRunning
			}
			return tx.PutTask(t)
		}); err != nil {
			b.Fatal(err)
		}
		return store.Event{Index: st.Index(), Changes: []store.Change{{Kind: store.KindTask, Op: store.OpUpdate, ID: id}}}
	}

	b.Run("legacy", func(b *testing.B) {
		cpu := cpuTime()
		for i := 0; b.Loop(); i++ {
			st.View(func(tx store.ReadTx) { _ = legacyAnswer(tx, nodeID(i)) })
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/node-answer")
		b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/node-answer")
	})

	b.Run("hub", func(b *testing.B) {
		h := newHub()
		_, cancel := st.ViewAndWatchIndex(func(tx store.ReadTx, index uint64) { h.reset(tx, index) })
		cancel()
		since := h.index
		sums := make([]string, benchNodes)
		h.mu.Lock()
		for n := range benchNodes {
			a, _ := h.answer(nodeID(n), since, "")
			sums[n] = a.NetworkSum
		}
		h.mu.Unlock()
		answers := 0
		var spent, cpu time.Duration
		for i := 0; b.Loop(); i++ {
			ev := toggle(i) // the store write is the same on both paths: not counted
			start, startCPU := time.Now(), cpuTime()
			st.View(func(tx store.ReadTx) { h.apply(tx, []store.Event{ev}) })
			h.mu.Lock()
			for n := range benchNodes {
				a, changed := h.answer(nodeID(n), since, sums[n])
				if !changed {
					b.Fatalf("node %d: no change after a backend changed", n)
				}
				sums[n] = a.NetworkSum
				answers++
			}
			since = h.index
			h.mu.Unlock()
			spent += time.Since(start)
			cpu += cpuTime() - startCPU
		}
		b.ReportMetric(float64(spent.Nanoseconds())/float64(answers), "ns/node-answer")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(answers), "cpu-ns/node-answer")
	})
}

// cpuTime is the process's user and system CPU time so far: on a shared
// machine it says more than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
