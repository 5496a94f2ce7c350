package containerd

import (
	"testing"

	cgroupsv1 "github.com/containerd/cgroups/stats/v1"
	cgroupsv2 "github.com/containerd/cgroups/v2/stats"
	"github.com/containerd/typeurl/v2"

	"github.com/shoal-dev/shoal/agent/exec"
)

func TestStatsOf(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want exec.Stats
	}{
		{"cgroups v1", &cgroupsv1.Metrics{
			CPU:    &cgroupsv1.CPUStat{Usage: &cgroupsv1.CPUUsage{Total: 2_500_000_000}},
			Memory: &cgroupsv1.MemoryStat{Usage: &cgroupsv1.MemoryEntry{Usage: 10 << 20}, TotalInactiveFile: 2 << 20},
		}, exec.Stats{CPUSeconds: 2.5, MemoryBytes: 8 << 20}},
		{"cgroups v1 without memory", &cgroupsv1.Metrics{
			CPU: &cgroupsv1.CPUStat{Usage: &cgroupsv1.CPUUsage{Total: 1_000_000}},
		}, exec.Stats{CPUSeconds: 0.001}},
		{"cgroups v1 cache above usage", &cgroupsv1.Metrics{
			Memory: &cgroupsv1.MemoryStat{Usage: &cgroupsv1.MemoryEntry{Usage: 1 << 20}, TotalInactiveFile: 2 << 20},
		}, exec.Stats{}},
		{"cgroups v2", &cgroupsv2.Metrics{
			CPU:    &cgroupsv2.CPUStat{UsageUsec: 1_500_000},
			Memory: &cgroupsv2.MemoryStat{Usage: 5 << 20, InactiveFile: 1 << 20},
		}, exec.Stats{CPUSeconds: 1.5, MemoryBytes: 4 << 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := typeurl.MarshalAny(tc.in)
			if err != nil {
				t.Fatalf("MarshalAny: %v", err)
			}
			got, err := statsOf(data)
			if err != nil {
				t.Fatalf("statsOf: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestStatsOfUnknownType(t *testing.T) {
	data, err := typeurl.MarshalAny(&cgroupsv1.CPUUsage{Total: 1})
	if err != nil {
		t.Fatalf("MarshalAny: %v", err)
	}
	if got, err := statsOf(data); err == nil {
		t.Errorf("got %+v, want an error for a CPUUsage message", got)
	}
}
