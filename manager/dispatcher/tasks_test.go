package dispatcher_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/dispatcher"
	"github.com/shoal-dev/shoal/store"
)

func (f *fixture) putTask(id, nodeID string, state api.TaskState) {
	f.t.Helper()
	task := &api.Task{ID: id, ServiceID: "s1", NodeID: nodeID, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: state}}
	if err := f.store.Update(context.Background(), func(tx *store.Tx) error { return tx.PutTask(task) }); err != nil {
		f.t.Fatalf("put task: %v", err)
	}
}

func (f *fixture) task(id string) *api.Task {
	var task *api.Task
	f.store.View(func(tx store.ReadTx) { task = tx.Task(id) })
	return task
}

func TestReportStatus(t *testing.T) {
	tests := []struct {
		name   string
		node   string // reporting node
		from   api.TaskState
		to     api.TaskState
		wantTo api.TaskState
	}{
		{"accepted", "n1", api.TaskAssigned, api.TaskAccepted, api.TaskAccepted},
		{"running", "n1", api.TaskStarting, api.TaskRunning, api.TaskRunning},
		{"failed", "n1", api.TaskRunning, api.TaskFailed, api.TaskFailed},
		{"backwards", "n1", api.TaskRunning, api.TaskStarting, api.TaskRunning},
		{"same", "n1", api.TaskRunning, api.TaskRunning, api.TaskRunning},
		{"below accepted", "n1", api.TaskPending, api.TaskAssigned, api.TaskPending},
		{"another node's task", "n2", api.TaskAssigned, api.TaskAccepted, api.TaskAssigned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.run()
			f.putTask("t1", "n1", tt.from)
			err := f.d.ReportStatus(context.Background(), tt.node, []api.TaskStatusUpdate{
				{TaskID: "t1", Status: api.TaskStatus{State: tt.to, Message: "reported"}},
				{TaskID: "missing", Status: api.TaskStatus{State: api.TaskRunning}},
			})
			if err != nil {
				t.Fatalf("ReportStatus: %v", err)
			}
			if got := f.task("t1").Status.State; got != tt.wantTo {
				t.Errorf("got state %q, want %q", got, tt.wantTo)
			}
		})
	}
}

func TestReportStatusConcurrent(t *testing.T) {
	f := newFixture(t)
	f.run()
	const n = 20
	for i := range n {
		f.putTask(string(rune('a'+i)), "n1", api.TaskStarting)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- f.d.ReportStatus(context.Background(), "n1", []api.TaskStatusUpdate{
				{TaskID: string(rune('a' + i)), Status: api.TaskStatus{State: api.TaskRunning}},
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("ReportStatus: %v", err)
		}
	}
	for i := range n {
		if got := f.task(string(rune('a' + i))).Status.State; got != api.TaskRunning {
			t.Errorf("task %c: got %q, want running", 'a'+i, got)
		}
	}
}

func TestTaskCallsOnlyWhileRunning(t *testing.T) {
	f := newFixture(t)
	if err := f.d.ReportStatus(context.Background(), "n1", nil); !errors.Is(err, dispatcher.ErrNotReady) {
		t.Errorf("ReportStatus before Run: got %v, want ErrNotReady", err)
	}
	if _, err := f.d.Assignments(context.Background(), "n1", 0, ""); !errors.Is(err, dispatcher.ErrNotReady) {
		t.Errorf("Assignments before Run: got %v, want ErrNotReady", err)
	}
}

func TestAssignments(t *testing.T) {
	f := newFixture(t)
	f.run()
	f.putTask("t1", "n1", api.TaskAssigned)
	f.putTask("t2", "n2", api.TaskAssigned)

	got, err := f.d.Assignments(context.Background(), "n1", 0, "")
	if err != nil {
		t.Fatalf("Assignments: %v", err)
	}
	if len(got.Tasks) != 1 || got.Tasks[0].ID != "t1" || got.Index != f.store.Index() {
		t.Fatalf("got %d tasks at index %d, want t1 at %d", len(got.Tasks), got.Index, f.store.Index())
	}

	// A long poll from the index it was given returns once one of its tasks changes.
	type result struct {
		a   api.Assignments
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := f.d.Assignments(context.Background(), "n1", got.Index, got.NetworkSum)
		done <- result{a, err}
	}()
	f.putTask("t3", "n2", api.TaskAssigned) // another node's task: no answer yet
	f.putTask("t4", "n1", api.TaskAssigned)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Assignments: %v", r.err)
		}
		if !r.a.Changes || len(r.a.Tasks) != 1 || r.a.Tasks[0].ID != "t4" || !r.a.NetworkSame {
			t.Errorf("got %+v, want the change alone: t4, network the same", r.a)
		}
		tasks, _ := r.a.ApplyTo(got.Tasks, got.Network)
		if ids := taskIDs(tasks); !reflect.DeepEqual(ids, []string{"t1", "t4"}) {
			t.Errorf("got tasks %v, want [t1 t4]", ids)
		}
	case <-time.After(10 * time.Second): // guards against a hang; the answer is due on the write
		t.Fatalf("the long poll did not answer a new task")
	}

	// A cancelled poll returns the caller's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.d.Assignments(ctx, "n1", f.store.Index(), got.NetworkSum); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v for a cancelled poll, want context.Canceled", err)
	}
}

func TestAssignmentsIngress(t *testing.T) {
	f := newFixture(t)
	f.run()
	ing := &api.Network{ID: "ing", Spec: api.NetworkSpec{Name: "ingress", Subnet: "10.255.0.0/16", Ingress: true}, VNI: 4096, Gateway: "10.255.0.1"}
	web := &api.Service{ID: "s1", Spec: api.ServiceSpec{Name: "web", Endpoint: api.EndpointSpec{Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: api.ProtocolTCP}}}}}
	nodes := []*api.Node{
		{ID: "n1", Status: api.NodeStatus{State: api.NodeStateReady, Addr: "192.168.0.1"}, IngressAddr: "10.255.0.10/16"},
		{ID: "n2", Status: api.NodeStatus{State: api.NodeStateReady, Addr: "192.168.0.2"}, IngressAddr: "10.255.0.11/16"},
		{ID: "n3", Status: api.NodeStatus{State: api.NodeStateReady, Addr: "192.168.0.3"}},
	}
	att := api.NetworkAttachment{NetworkID: "ing", Addr: "10.255.0.2/16", MAC: "02:42:0a:ff:00:02"}
	task := &api.Task{ID: "t1", ServiceID: "s1", NodeID: "n1", DesiredState: api.TaskRunning,
		Status: api.TaskStatus{State: api.TaskRunning}, Networks: []api.NetworkAttachment{att}}
	// t2 waits for its first passing health check: a peer, not a backend.
	att2 := api.NetworkAttachment{NetworkID: "ing", Addr: "10.255.0.3/16", MAC: "02:42:0a:ff:00:03"}
	starting := &api.Task{ID: "t2", ServiceID: "s1", NodeID: "n1", DesiredState: api.TaskRunning,
		Status: api.TaskStatus{State: api.TaskStarting, Health: api.HealthStarting}, Networks: []api.NetworkAttachment{att2}}
	err := f.store.Update(context.Background(), func(tx *store.Tx) error {
		for _, n := range nodes {
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		return errors.Join(tx.PutNetwork(ing), tx.PutService(web), tx.PutTask(task), tx.PutTask(starting))
	})
	if err != nil {
		t.Fatalf("put state: %v", err)
	}

	// n2 runs no task of web, yet it carries the mesh.
	got, err := f.d.Assignments(context.Background(), "n2", 0, "")
	if err != nil {
		t.Fatalf("Assignments: %v", err)
	}
	st := got.Network
	if len(st.Networks) != 1 || st.Networks[0].ID != "ing" || st.IngressAddr != "10.255.0.11/16" {
		t.Errorf("got networks %v and ingress address %q, want [ing] and 10.255.0.11/16", st.Networks, st.IngressAddr)
	}
	wantPeers := []api.NetworkPeer{
		{NetworkAttachment: api.NetworkAttachment{NetworkID: "ing", Addr: "10.255.0.10/16", MAC: "02:42:0a:ff:00:0a"}, NodeID: "n1", NodeAddr: "192.168.0.1"},
		{NetworkAttachment: api.NetworkAttachment{NetworkID: "ing", Addr: "10.255.0.11/16", MAC: "02:42:0a:ff:00:0b"}, NodeID: "n2", NodeAddr: "192.168.0.2"},
		{NetworkAttachment: att, TaskID: "t1", NodeAddr: "192.168.0.1"},
		{NetworkAttachment: att2, TaskID: "t2", NodeAddr: "192.168.0.1"},
	}
	if !reflect.DeepEqual(st.Peers, wantPeers) {
		t.Errorf("peers: got %+v, want %+v", st.Peers, wantPeers)
	}
	wantPub := []api.PublishedPort{{PortConfig: web.Spec.Endpoint.Ports[0], Backends: []string{"10.255.0.2/16"}}}
	if !reflect.DeepEqual(st.Published, wantPub) {
		t.Errorf("published: got %+v, want %+v", st.Published, wantPub)
	}
	for _, svc := range st.Services {
		for _, b := range svc.Backends {
			if b.Addr == att2.Addr {
				t.Errorf("service %s: the starting task t2 is a backend", svc.Name)
			}
		}
	}

	// A node without an ingress address has nothing to wire.
	got, err = f.d.Assignments(context.Background(), "n3", 0, "")
	if err != nil {
		t.Fatalf("Assignments: %v", err)
	}
	if !reflect.DeepEqual(got.Network, api.NetworkState{}) {
		t.Errorf("n3: got %+v, want an empty network state", got.Network)
	}
}

func taskIDs(tasks []*api.Task) []string {
	ids := []string{}
	for _, task := range tasks {
		ids = append(ids, task.ID)
	}
	return ids
}

// A node that holds the answer at one index gets, from that index, exactly
// what changed, and ApplyTo gives it the same set as a complete read.
func TestAssignmentsChanges(t *testing.T) {
	f := newFixture(t)
	f.run()
	f.putTask("t1", "n1", api.TaskAssigned)
	f.putTask("t2", "n1", api.TaskAssigned)
	ask := func(since uint64, sum string) api.Assignments {
		t.Helper()
		a, err := f.d.Assignments(context.Background(), "n1", since, sum)
		if err != nil {
			t.Fatalf("Assignments: %v", err)
		}
		return a
	}
	first := ask(0, "")
	if first.Changes || !reflect.DeepEqual(taskIDs(first.Tasks), []string{"t1", "t2"}) {
		t.Fatalf("first answer: got %+v, want the complete set [t1 t2]", first)
	}
	held, net := first.Tasks, first.Network
	update := func(id string, change func(*api.Task)) {
		t.Helper()
		if err := f.store.Update(context.Background(), func(tx *store.Tx) error {
			task := tx.Task(id)
			change(task)
			return tx.PutTask(task)
		}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name        string
		write       func()
		wantTasks   []string // in the answer
		wantRemoved []string
		wantHeld    []string // after ApplyTo
	}{
		{"status change", func() { update("t1", func(task *api.Task) { task.Status.State = api.TaskRunning }) }, []string{"t1"}, nil, []string{"t1", "t2"}},
		{"task removed", func() {
			if err := f.store.Update(context.Background(), func(tx *store.Tx) error { return tx.DeleteTask("t2") }); err != nil {
				t.Fatal(err)
			}
		}, []string{}, []string{"t2"}, []string{"t1"}},
		{"task added", func() { f.putTask("t3", "n1", api.TaskAssigned) }, []string{"t3"}, nil, []string{"t1", "t3"}},
		{"task moved to another node", func() { update("t3", func(task *api.Task) { task.NodeID = "n2" }) }, []string{}, []string{"t3"}, []string{"t1"}},
	}
	index, sum := first.Index, first.NetworkSum
	for _, st := range steps {
		st.write()
		a := ask(index, sum)
		if !a.Changes || !reflect.DeepEqual(taskIDs(a.Tasks), st.wantTasks) || !reflect.DeepEqual(a.Removed, st.wantRemoved) {
			t.Errorf("%s: got changes %v tasks %v removed %v, want tasks %v removed %v", st.name, a.Changes, taskIDs(a.Tasks), a.Removed, st.wantTasks, st.wantRemoved)
		}
		held, net = a.ApplyTo(held, net)
		if got := taskIDs(held); !reflect.DeepEqual(got, st.wantHeld) {
			t.Errorf("%s: holds %v after ApplyTo, want %v", st.name, got, st.wantHeld)
		}
		full := ask(0, "")
		if !reflect.DeepEqual(taskIDs(full.Tasks), st.wantHeld) || !reflect.DeepEqual(full.Network, net) {
			t.Errorf("%s: a complete read holds %v, the changes %v", st.name, taskIDs(full.Tasks), st.wantHeld)
		}
		index, sum = a.Index, a.NetworkSum
	}
	// An index from before this leader's hub gets the complete set.
	if a := ask(1, sum); a.Changes || !reflect.DeepEqual(taskIDs(a.Tasks), []string{"t1"}) {
		t.Errorf("old index: got changes %v tasks %v, want the complete set [t1]", a.Changes, taskIDs(a.Tasks))
	}
}
