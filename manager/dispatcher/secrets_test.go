package dispatcher_test

import (
	"context"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

func secretIDs(a api.Assignments) []string {
	var out []string
	for _, s := range a.Secrets {
		out = append(out, s.ID)
	}
	for _, c := range a.Configs {
		out = append(out, c.ID)
	}
	return out
}

// TestAssignmentsCarrySecrets: a node gets a secret with a task that should
// run and references it, never otherwise; the metric counts what each node got.
func TestAssignmentsCarrySecrets(t *testing.T) {
	f := newFixture(t)
	f.run()
	put := func(fn func(tx *store.Tx) error) {
		t.Helper()
		if err := f.store.Update(context.Background(), fn); err != nil {
			t.Fatal(err)
		}
	}
	put(func(tx *store.Tx) error {
		if err := tx.PutSecret(&api.Secret{ID: "sec1", Spec: api.SecretSpec{Name: "pw", Data: []byte("s3cret")}}); err != nil {
			return err
		}
		return tx.PutConfig(&api.Config{ID: "cfg1", Spec: api.ConfigSpec{Name: "conf", Data: []byte("c")}})
	})
	spec := api.TaskSpec{Secrets: []api.SecretReference{{ID: "sec1", Name: "pw", Target: "pw"}},
		Configs: []api.ConfigReference{{ID: "cfg1", Name: "conf", Target: "/conf"}}}
	put(func(tx *store.Tx) error {
		for _, tk := range []*api.Task{
			{ID: "t1", NodeID: "n1", Spec: spec, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskAssigned}},
			{ID: "t2", NodeID: "n2", DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskAssigned}},
			// A finished task on n3 references the secret: n3 gets nothing.
			{ID: "t3", NodeID: "n3", Spec: spec, DesiredState: api.TaskShutdown, Status: api.TaskStatus{State: api.TaskShutdown}},
		} {
			if err := tx.PutTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	ask := func(node string, since uint64) api.Assignments {
		t.Helper()
		a, err := f.d.Assignments(context.Background(), node, since, "")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	n1 := ask("n1", 0)
	if got := secretIDs(n1); len(got) != 2 || got[0] != "sec1" || got[1] != "cfg1" || string(n1.Secrets[0].Spec.Data) != "s3cret" {
		t.Errorf("n1 got %v, want sec1 and cfg1 with data", got)
	}
	for _, n := range []string{"n2", "n3"} {
		if got := secretIDs(ask(n, 0)); len(got) != 0 {
			t.Errorf("%s got %v, want nothing: no task of it should run and reference them", n, got)
		}
	}
	// t1 stops: the change that says so carries no secret.
	put(func(tx *store.Tx) error {
		tk := tx.Task("t1")
		tk.DesiredState = api.TaskShutdown
		return tx.PutTask(tk)
	})
	if a := ask("n1", n1.Index); len(a.Tasks) != 1 || len(secretIDs(a)) != 0 {
		t.Errorf("stop of t1: got tasks %v secrets %v, want t1 and no secret", taskIDs(a.Tasks), secretIDs(a))
	}
	for node, want := range map[string]float64{"n1": 1, "n2": 0, "n3": 0} {
		if got := f.secretsSent(node); got != want {
			t.Errorf("shoal_dispatcher_secrets_sent_total{node=%q} = %v, want %v", node, got, want)
		}
	}
}

// secretsSent reads shoal_dispatcher_secrets_sent_total for a node (0 if absent).
func (f *fixture) secretsSent(node string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "shoal_dispatcher_secrets_sent_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "node" && l.GetValue() == node {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
