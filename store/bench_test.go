package store

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
)

// benchStore holds n tasks of one service spread over 100 nodes, with the
// fields a running task carries.
func benchStore(b *testing.B, n int) *Store {
	b.Helper()
	s := New(clock.NewFake(t0), slog.New(slog.DiscardHandler))
	err := s.Update(context.Background(), func(tx *Tx) error {
		for i := range n {
			err := tx.PutTask(&api.Task{
				ID: fmt.Sprintf("task%06d", i), ServiceID: "svc", ServiceName: "web", Slot: uint64(i + 1),
				NodeID: fmt.Sprintf("node%03d", i%100), DesiredState: api.TaskRunning,
				Spec: api.TaskSpec{Image: "registry:5000/app:1", Command: []string{"sh", "-c", "sleep 1d"},
					Env: []string{"A=1", "B=2"}, Placement: api.Placement{Constraints: []string{"node.role==worker"}},
					Resources: api.Resources{Reservations: api.ResourceAmounts{NanoCPUs: 1e8, MemoryBytes: 1 << 26}}},
				Status:   api.TaskStatus{State: api.TaskRunning, Timestamp: t0, ContainerID: "c0123456789"},
				Networks: []api.NetworkAttachment{{NetworkID: "net1", Addr: "10.0.0.2/24", MAC: "02:42:0a:00:00:02"}},
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkListTasks is the read every controller pass starts with.
func BenchmarkListTasks(b *testing.B) {
	s := benchStore(b, 10000)
	b.ResetTimer()
	for b.Loop() {
		s.View(func(tx ReadTx) {
			if len(tx.Tasks()) != 10000 {
				b.Fatal("short list")
			}
		})
	}
}
