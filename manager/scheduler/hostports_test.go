package scheduler

import (
	"reflect"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

func withHost(ts []*api.Task, ports ...api.PortConfig) []*api.Task {
	for _, t := range ts {
		t.HostPorts = ports
	}
	return ts
}

func hostPort(ip string, port uint16, proto string) api.PortConfig {
	return api.PortConfig{Published: port, Target: 8443, Protocol: proto, PublishMode: api.PublishHost, PublishedIP: ip}
}

func TestScheduleHostPorts(t *testing.T) {
	tcp443 := hostPort("", 443, "tcp")
	held := func(id, node string, ports ...api.PortConfig) *api.Task {
		t := runningTask(id, "other", node, api.ResourceAmounts{})
		t.HostPorts = ports
		return t
	}
	tests := []struct {
		name     string
		existing []*api.Task
		pending  []*api.Task
		want     map[string]int
		reason   string // of every unplaced task
	}{
		{name: "one task per node", pending: withHost(pendingTasks("web", 3, api.TaskSpec{}), tcp443),
			want: map[string]int{"a": 1, "b": 1, "c": 1}},
		{name: "more tasks than nodes", pending: withHost(pendingTasks("web", 4, api.TaskSpec{}), tcp443),
			want: map[string]int{"a": 1, "b": 1, "c": 1}, reason: "no suitable node (3 nodes have host port 443/tcp in use)"},
		{name: "held by another service", existing: []*api.Task{held("x", "a", tcp443), held("y", "b", hostPort("10.0.0.5", 443, "tcp"))},
			pending: withHost(pendingTasks("web", 2, api.TaskSpec{}), tcp443),
			want:    map[string]int{"c": 1}, reason: "no suitable node (3 nodes have host port 443/tcp in use)"},
		{name: "other protocol, other address", existing: []*api.Task{held("x", "a", hostPort("", 443, "udp")), held("y", "b", hostPort("10.0.0.6", 443, "tcp"))},
			pending: withHost(pendingTasks("web", 3, api.TaskSpec{}), hostPort("10.0.0.5", 443, "tcp")),
			want:    map[string]int{"a": 1, "b": 1, "c": 1}},
		{name: "the same address", existing: []*api.Task{held("x", "a", hostPort("10.0.0.5", 443, "tcp"))},
			pending: withHost(pendingTasks("web", 3, api.TaskSpec{}), hostPort("10.0.0.5", 443, "tcp")),
			want:    map[string]int{"b": 1, "c": 1}, reason: "no suitable node (3 nodes have host port 10.0.0.5:443/tcp in use)"},
		{name: "a finished task holds nothing", existing: func() []*api.Task {
			t := held("x", "a", tcp443)
			t.Status.State = api.TaskFailed
			return []*api.Task{t}
		}(), pending: withHost(pendingTasks("web", 3, api.TaskSpec{}), tcp443), want: map[string]int{"a": 1, "b": 1, "c": 1}},
		{name: "without host ports tasks stack", existing: []*api.Task{held("x", "a", tcp443)},
			pending: pendingTasks("web", 6, api.TaskSpec{}), want: map[string]int{"a": 2, "b": 2, "c": 2}},
		{name: "a global task on a taken node", existing: []*api.Task{held("x", "b", tcp443)},
			pending: func() []*api.Task {
				ts := withHost(pendingTasks("web", 2, api.TaskSpec{}), tcp443)
				ts[0].NodeID, ts[1].NodeID = "a", "b"
				return ts
			}(), want: map[string]int{"a": 1}, reason: "no suitable node (1 node has host port 443/tcp in use)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnapshot([]*api.Node{testNode("a"), testNode("b"), testNode("c")}, tt.existing)
			r := Schedule(s, tt.pending)
			if got := perNode(r); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("placed %v, want %v", got, tt.want)
			}
			for _, u := range r.Unplaced {
				if u.Reason != tt.reason {
					t.Errorf("task %s unplaced: %q, want %q", u.TaskID, u.Reason, tt.reason)
				}
			}
			if tt.reason != "" && len(r.Unplaced) == 0 {
				t.Errorf("every task placed, want some unplaced: %s", tt.reason)
			}
		})
	}
}
