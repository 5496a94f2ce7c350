package containerd

import (
	"context"
	"errors"
	"fmt"

	cgroupsv1 "github.com/containerd/cgroups/stats/v1"
	cgroupsv2 "github.com/containerd/cgroups/v2/stats"
	"github.com/containerd/containerd"
	"github.com/containerd/typeurl/v2"

	"github.com/shoal-dev/shoal/agent/exec"
)

// Stats reads the task's cgroup counters through containerd (the runc
// shim's metrics): CPU time and memory in use.
func (e *Executor) Stats(ctx context.Context, taskID string) (exec.Stats, error) {
	ctx = e.ctx(ctx)
	task, err := e.task(ctx, taskID)
	if err != nil {
		return exec.Stats{}, fmt.Errorf("stats %s: %w", taskID, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return exec.Stats{}, fmt.Errorf("stats %s: %w", taskID, err)
	}
	if st.Status != containerd.Running && st.Status != containerd.Paused {
		return exec.Stats{}, fmt.Errorf("stats %s: task is %s: %w", taskID, st.Status, exec.ErrNotStarted)
	}
	m, err := task.Metrics(ctx)
	if err != nil {
		return exec.Stats{}, fmt.Errorf("stats %s: %w", taskID, err)
	}
	if m.Data == nil {
		return exec.Stats{}, fmt.Errorf("stats %s: %w", taskID, errNoMetrics)
	}
	out, err := statsOf(m.Data)
	if err != nil {
		return exec.Stats{}, fmt.Errorf("stats %s: %w", taskID, err)
	}
	return out, nil
}

var errNoMetrics = errors.New("containerd executor: the shim sent no metrics")

// statsOf decodes the shim's metrics, cgroups v1 or v2.
func statsOf(data typeurl.Any) (exec.Stats, error) {
	v, err := typeurl.UnmarshalAny(data)
	if err != nil {
		return exec.Stats{}, fmt.Errorf("decode metrics %s: %w", data.GetTypeUrl(), err)
	}
	var out exec.Stats
	switch m := v.(type) {
	case *cgroupsv1.Metrics:
		if m.CPU != nil && m.CPU.Usage != nil {
			out.CPUSeconds = float64(m.CPU.Usage.Total) / 1e9
		}
		if m.Memory != nil && m.Memory.Usage != nil {
			out.MemoryBytes = workingSet(m.Memory.Usage.Usage, m.Memory.TotalInactiveFile)
		}
	case *cgroupsv2.Metrics:
		if m.CPU != nil {
			out.CPUSeconds = float64(m.CPU.UsageUsec) / 1e6
		}
		if m.Memory != nil {
			out.MemoryBytes = workingSet(m.Memory.Usage, m.Memory.InactiveFile)
		}
	default:
		return exec.Stats{}, fmt.Errorf("decode metrics: unknown type %s", data.GetTypeUrl())
	}
	return out, nil
}

// workingSet is usage less the inactive file pages, never below zero.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}
