package allocator

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

type harness struct {
	st  *store.Store
	a   *Allocator
	reg *prometheus.Registry
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	logger := slog.New(slog.DiscardHandler)
	h := &harness{st: store.New(clk, logger), reg: prometheus.NewRegistry()}
	h.a = New(Config{Store: h.st, Clock: clk, Logger: logger, Registry: h.reg})
	h.update(t, func(tx *store.Tx) error {
		for _, n := range fixtureNetworks() {
			n.Meta = api.Meta{}
			if err := tx.PutNetwork(n); err != nil {
				return err
			}
		}
		return nil
	})
	return h
}

func (h *harness) update(t *testing.T, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := h.st.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func (h *harness) task(id string) *api.Task {
	var out *api.Task
	h.st.View(func(tx store.ReadTx) { out = tx.Task(id) })
	return out
}

func (h *harness) service(id string) *api.Service {
	var out *api.Service
	h.st.View(func(tx store.ReadTx) { out = tx.Service(id) })
	return out
}

func put(h *harness, t *testing.T, services []*api.Service, tasks []*api.Task) {
	t.Helper()
	h.update(t, func(tx *store.Tx) error {
		for _, s := range services {
			s.Meta = api.Meta{}
			if err := tx.PutService(s); err != nil {
				return err
			}
		}
		for _, tk := range tasks {
			if err := tx.PutTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestPassWritesAndReportsFailures(t *testing.T) {
	h := newHarness(t)
	put(h, t, []*api.Service{svc("web", []string{"tiny"}, publish)}, []*api.Task{
		task("t1", "web", api.TaskPending, ""), task("t2", "web", api.TaskPending, ""),
		task("t3", "web", api.TaskPending, ""), task("t4", "web", api.TaskPending, ""),
		task("t5", "web", api.TaskPending, ""),
	})
	ctx := context.Background()
	if err := h.a.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := h.service("web").Endpoint.VIPs, []api.VIP{{NetworkID: "ing", Addr: "10.255.0.2/16"}, {NetworkID: "tiny", Addr: "10.0.3.2/29"}}; !slices.Equal(got, want) {
		t.Errorf("got VIPs %+v, want %+v", got, want)
	}
	t1 := h.task("t1")
	if want := []api.NetworkAttachment{
		{NetworkID: "ing", Addr: "10.255.0.3/16", MAC: "02:42:0a:ff:00:03"},
		{NetworkID: "tiny", Addr: "10.0.3.3/29", MAC: "02:42:0a:00:03:03"},
	}; !slices.Equal(t1.Networks, want) {
		t.Errorf("got t1 attachments %+v, want %+v", t1.Networks, want)
	}
	t5 := h.task("t5")
	if len(t5.Networks) != 0 || !strings.HasPrefix(t5.Status.Err, "network allocation: network tiny (10.0.3.0/29): allocator: no free address") {
		t.Errorf("got t5 %+v, %q, want no attachments and the reason", t5.Networks, t5.Status.Err)
	}
	if got := value(t, h.a.m.allocated); got != 10 {
		t.Errorf("got %v addresses counted, want 10 (2 VIPs, 4 tasks on 2 networks)", got)
	}
	if got := value(t, h.a.m.waiting); got != 1 {
		t.Errorf("got %v tasks waiting, want 1", got)
	}

	// A second pass on the same state writes nothing.
	before := h.st.Index()
	if err := h.a.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.st.Index(); got != before {
		t.Errorf("idle pass moved the store from %d to %d", before, got)
	}

	// t1 fails: t5 gets its address and loses the error.
	h.update(t, func(tx *store.Tx) error {
		tk := tx.Task("t1")
		tk.Status.State = api.TaskFailed
		return tx.PutTask(tk)
	})
	if err := h.a.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	t5 = h.task("t5")
	if len(t5.Networks) != 2 || t5.Networks[1].Addr != "10.0.3.3/29" || t5.Status.Err != "" {
		t.Errorf("got t5 %+v, %q, want t1's old address and no error", t5.Networks, t5.Status.Err)
	}
}

func TestPassLeavesChangedTasks(t *testing.T) {
	h := newHarness(t)
	put(h, t, []*api.Service{svc("s", []string{"a"}, dnsrr)}, []*api.Task{task("t1", "s", api.TaskPending, "")})
	// Scheduled between the snapshot and the write: the task is left alone.
	var networks []*api.Network
	var services []*api.Service
	var tasks []*api.Task
	h.st.View(func(tx store.ReadTx) { networks, services, tasks = tx.Networks(), tx.Services(), tx.Tasks() })
	if p := Allocate(networks, services, tasks, nil); len(p.Tasks) != 1 {
		t.Fatalf("got %+v, want t1 planned", p)
	}
	h.update(t, func(tx *store.Tx) error {
		tk := tx.Task("t1")
		tk.DesiredState = api.TaskShutdown
		return tx.PutTask(tk)
	})
	if err := h.a.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h.task("t1").Networks; len(got) != 0 {
		t.Errorf("got %+v on a task that should no longer run, want none", got)
	}
}

func TestRunAllocatesNewTasks(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	put(h, t, []*api.Service{svc("s", []string{"a"})}, []*api.Task{task("t1", "s", api.TaskPending, "")})
	waitFor(t, func() bool { return len(h.task("t1").Networks) == 1 && len(h.service("s").Endpoint.VIPs) == 1 })
	h.update(t, func(tx *store.Tx) error { return tx.PutTask(task("t2", "s", api.TaskPending, "")) })
	waitFor(t, func() bool {
		n := h.task("t2").Networks
		return len(n) == 1 && n[0].Addr == "10.0.1.4/24"
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}
