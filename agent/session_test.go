package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
)

func upd(id string, s api.TaskState) api.TaskStatusUpdate {
	return api.TaskStatusUpdate{TaskID: id, Status: api.TaskStatus{State: s}}
}

func summary(us []api.TaskStatusUpdate) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.TaskID + "=" + string(u.Status.State)
	}
	return out
}

func TestStatusQueue(t *testing.T) {
	tests := []struct {
		name    string
		push    []api.TaskStatusUpdate
		putBack []api.TaskStatusUpdate
		want    []string
	}{
		{
			name: "empty",
			want: []string{},
		},
		{
			name: "furthest state per task, first-seen order",
			push: []api.TaskStatusUpdate{
				upd("t1", api.TaskAccepted), upd("t2", api.TaskAccepted),
				upd("t1", api.TaskRunning), upd("t2", api.TaskPreparing),
			},
			want: []string{"t1=running", "t2=preparing"},
		},
		{
			name: "an older state does not move a task back",
			push: []api.TaskStatusUpdate{upd("t1", api.TaskRunning), upd("t1", api.TaskStarting)},
			want: []string{"t1=running"},
		},
		{
			name:    "putBack requeues what was not sent",
			putBack: []api.TaskStatusUpdate{upd("t1", api.TaskRunning), upd("t2", api.TaskFailed)},
			want:    []string{"t1=running", "t2=failed"},
		},
		{
			name:    "putBack does not overwrite a newer update",
			push:    []api.TaskStatusUpdate{upd("t1", api.TaskComplete)},
			putBack: []api.TaskStatusUpdate{upd("t1", api.TaskRunning), upd("t2", api.TaskRunning)},
			want:    []string{"t1=complete", "t2=running"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newStatusQueue()
			for _, u := range tt.push {
				q.push(u)
			}
			q.putBack(tt.putBack)
			if got := summary(q.take()); !slices.Equal(got, tt.want) {
				t.Errorf("take: got %v, want %v", got, tt.want)
			}
			if got := q.take(); len(got) != 0 {
				t.Errorf("second take: got %v, want nothing", summary(got))
			}
		})
	}
}

func TestStatusQueueKeepsLatestOfSameState(t *testing.T) {
	q := newStatusQueue()
	first := upd("t1", api.TaskRunning)
	first.Status.Message = "first"
	second := upd("t1", api.TaskRunning)
	second.Status.Message = "second"
	q.push(first)
	q.push(second)
	got := q.take()
	if len(got) != 1 || got[0].Status.Message != "second" {
		t.Errorf("take: got %+v, want only the second update", got)
	}
}

func TestStatusQueueWakes(t *testing.T) {
	q := newStatusQueue()
	select {
	case <-q.wake:
		t.Fatal("wake before any push")
	default:
	}
	q.push(upd("t1", api.TaskRunning))
	q.push(upd("t2", api.TaskRunning)) // a second push must not block
	select {
	case <-q.wake:
	default:
		t.Fatal("no wake after push")
	}
}

// fakeManager is a manager API on an httptest TLS server that answers
// heartbeats, or fails them while down is set.
type fakeManager struct {
	name string
	srv  *httptest.Server

	mu       sync.Mutex
	down     bool
	describe bool // answer the next beat with Describe
	beats    int
	bodies   []bool // per beat: whether it carried a body
}

// takeBodies returns, per beat since the last call, whether it was full.
func (m *fakeManager) takeBodies() []bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.bodies
	m.bodies = nil
	return out
}

func newFakeManager(t *testing.T, name string) *fakeManager {
	t.Helper()
	m := &fakeManager{name: name}
	m.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/session/heartbeat" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		m.mu.Lock()
		m.beats++
		m.bodies = append(m.bodies, len(body) > 0)
		down, describe := m.down, m.describe
		m.describe = false
		m.mu.Unlock()
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(api.Error{Message: name + " is not ready"})
			return
		}
		_ = json.NewEncoder(w).Encode(api.HeartbeatResponse{LeaderID: name, Describe: describe})
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *fakeManager) addr() string { return m.srv.Listener.Addr().String() }

func (m *fakeManager) beatCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.beats
}

func (m *fakeManager) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

// sessionHarness is an Agent whose Dial records the addresses it is asked
// for and fails for addresses in undialable.
type sessionHarness struct {
	a        *Agent
	managers []api.Endpoints

	mu     sync.Mutex
	dialed []string
}

func newSessionHarness(t *testing.T, managers []api.Endpoints, undialable ...string) *sessionHarness {
	t.Helper()
	// httptest servers share one certificate.
	probe := httptest.NewTLSServer(http.NotFoundHandler())
	pool := x509.NewCertPool()
	pool.AddCert(probe.Certificate())
	probe.Close()
	tlsConfig := &tls.Config{RootCAs: pool}

	h := &sessionHarness{managers: managers}
	h.a = New(Config{
		Dial: func(addr string) (*api.Client, error) {
			h.mu.Lock()
			h.dialed = append(h.dialed, addr)
			h.mu.Unlock()
			if slices.Contains(undialable, addr) {
				return nil, errors.New("dial " + addr + ": no route")
			}
			c, err := api.NewClient(addr, tlsConfig)
			if err == nil {
				t.Cleanup(c.Close)
			}
			return c, err
		},
		Managers: func() []api.Endpoints { return h.managers },
		Clock:    clock.NewFake(epoch),
		Logger:   discardLogger(),
	})
	return h
}

// beat runs one heartbeat through withManager and says who answered.
func (h *sessionHarness) beat(ctx context.Context) (string, error) {
	var resp api.HeartbeatResponse
	err := h.a.withManager(ctx, func(c *api.Client) error {
		var err error
		resp, err = c.Heartbeat(ctx, &api.Heartbeat{})
		return err
	})
	return resp.LeaderID, err
}

func (h *sessionHarness) takeDialed() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.dialed
	h.dialed = nil
	return out
}

func TestWithManagerFailsOver(t *testing.T) {
	m1, m2, m3 := newFakeManager(t, "m1"), newFakeManager(t, "m2"), newFakeManager(t, "m3")
	const lost = "192.0.2.1:2377" // Dial fails for it
	h := newSessionHarness(t, []api.Endpoints{
		{API: lost}, {API: ""}, {API: m1.addr()}, {API: m2.addr()}, {API: m3.addr()},
	}, lost)
	ctx := context.Background()
	m1.setDown(true)

	steps := []struct {
		name       string
		down       map[*fakeManager]bool
		wantLeader string
		wantDialed []string
	}{
		{
			name:       "no manager answered yet: in the given order",
			wantLeader: "m2",
			wantDialed: []string{lost, m1.addr(), m2.addr()},
		},
		{
			name:       "the one that answered is tried first",
			wantLeader: "m2",
			wantDialed: []string{m2.addr()},
		},
		{
			name:       "the last good one fails: the others, in order",
			down:       map[*fakeManager]bool{m2: true, m1: false},
			wantLeader: "m1",
			wantDialed: []string{m2.addr(), lost, m1.addr()},
		},
		{
			name:       "the new one is remembered",
			down:       map[*fakeManager]bool{m2: false},
			wantLeader: "m1",
			wantDialed: []string{m1.addr()},
		},
	}
	for _, s := range steps {
		for m, down := range s.down {
			m.setDown(down)
		}
		got, err := h.beat(ctx)
		if err != nil {
			t.Fatalf("%s: withManager: %v", s.name, err)
		}
		if got != s.wantLeader {
			t.Errorf("%s: answered by %q, want %q", s.name, got, s.wantLeader)
		}
		if dialed := h.takeDialed(); !slices.Equal(dialed, s.wantDialed) {
			t.Errorf("%s: dialed %v, want %v", s.name, dialed, s.wantDialed)
		}
	}
	if n := m3.beatCount(); n != 0 {
		t.Errorf("m3: got %d heartbeats, want 0 (an earlier manager always answered)", n)
	}
}

func TestWithManagerErrors(t *testing.T) {
	ctx := context.Background()

	t.Run("no manager known", func(t *testing.T) {
		h := newSessionHarness(t, nil)
		if _, err := h.beat(ctx); !errors.Is(err, errNoManager) {
			t.Errorf("got %v, want %v", err, errNoManager)
		}
	})

	t.Run("all fail: the last error, none remembered", func(t *testing.T) {
		m1, m2 := newFakeManager(t, "m1"), newFakeManager(t, "m2")
		m1.setDown(true)
		m2.setDown(true)
		h := newSessionHarness(t, []api.Endpoints{{API: m1.addr()}, {API: m2.addr()}})
		_, err := h.beat(ctx)
		if !api.IsStatus(err, http.StatusServiceUnavailable) || err.Error() != "m2 is not ready" {
			t.Errorf("got %v, want m2's 503", err)
		}
		h.a.mu.Lock()
		current := h.a.current
		h.a.mu.Unlock()
		if current != "" {
			t.Errorf("current manager: got %q, want none", current)
		}
	})

	t.Run("ctx ends: no further managers tried", func(t *testing.T) {
		m1, m2 := newFakeManager(t, "m1"), newFakeManager(t, "m2")
		h := newSessionHarness(t, []api.Endpoints{{API: m1.addr()}, {API: m2.addr()}})
		cctx, cancel := context.WithCancel(ctx)
		calls := 0
		err := h.a.withManager(cctx, func(*api.Client) error {
			calls++
			cancel()
			return errors.New("interrupted")
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want %v", err, context.Canceled)
		}
		if calls != 1 {
			t.Errorf("fn calls: got %d, want 1", calls)
		}
	})
}

func TestBeatCountsFailures(t *testing.T) {
	m := newFakeManager(t, "m1")
	h := newSessionHarness(t, []api.Endpoints{{API: m.addr()}})
	ctx := context.Background()

	resp, ok := h.a.beat(ctx, time.Second)
	if !ok || resp.LeaderID != "m1" {
		t.Errorf("beat: got %+v, %v, want m1's answer", resp, ok)
	}
	m.setDown(true)
	if _, ok := h.a.beat(ctx, time.Second); ok {
		t.Errorf("beat with the manager down: got ok, want a failure")
	}
	if got := counterValue(t, h.a); got != 1 {
		t.Errorf("shoal_agent_heartbeat_failures_total: got %v, want 1", got)
	}
}

func counterValue(t *testing.T, a *Agent) float64 {
	t.Helper()
	var m dto.Metric
	if err := a.failures.Write(&m); err != nil {
		t.Fatalf("read counter: %v", err)
	}
	return m.GetCounter().GetValue()
}

// Beats are full only when the node changed since the last full beat a
// manager took, or when a manager asks; otherwise empty.
func TestBeatsEmptyUnlessChanged(t *testing.T) {
	m := newFakeManager(t, "m1")
	h := newSessionHarness(t, []api.Endpoints{{API: m.addr()}})
	ctx := context.Background()
	beat := func() bool {
		_, ok := h.a.beat(ctx, 5*time.Second)
		return ok
	}
	setEngine := func(version string) {
		h.a.mu.Lock()
		h.a.engine = api.Engine{Name: "containerd", Version: version, Available: true}
		h.a.mu.Unlock()
	}
	steps := []struct {
		name   string
		before func()
		ok     bool
		full   bool
	}{
		{"first", nil, true, true},
		{"unchanged", nil, true, false},
		{"unchanged again", nil, true, false},
		{"engine changed", func() { setEngine("2.0") }, true, true},
		{"unchanged after the change", nil, true, false},
		{"the manager asks", func() { m.mu.Lock(); m.describe = true; m.mu.Unlock() }, true, false},
		{"after the ask", nil, true, true},
		{"a full beat that failed", func() { setEngine("2.1"); m.setDown(true) }, false, true},
		{"is sent again", func() { m.setDown(false) }, true, true},
		{"then empty", nil, true, false},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		if ok := beat(); ok != st.ok {
			t.Fatalf("%s: beat answered %v, want %v", st.name, ok, st.ok)
		}
		if got := m.takeBodies(); !slices.Equal(got, []bool{st.full}) {
			t.Errorf("%s: got bodies %v, want [%v]", st.name, got, st.full)
		}
	}
}
