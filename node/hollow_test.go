package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/exec/simexec"
	"github.com/shoal-dev/shoal/api"
)

// freePort is a TCP port free on 127.0.0.1 now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls f until it returns nil or the deadline passes.
func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHollow joins hollow nodes to a real one-manager cluster in this
// process: each gets its own identity, runs its tasks, and a stopped one
// goes down while a restarted one is ready again with its tasks adopted.
func TestHollow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	apiPort := freePort(t)
	ready := make(chan ReadyInfo, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Mode: ModeInit, DataDir: filepath.Join(dir, "m1"), AdvertiseAddr: "127.0.0.1", ListenIP: "127.0.0.1",
			APIPort: apiPort, RaftPort: freePort(t), GossipPort: freePort(t), Hostname: "m1",
			ContainerdAddress: filepath.Join(dir, "none.sock"),
			// Hollow nodes are not gossip members: no grace for a silent one.
			Dispatcher: api.DispatcherConfig{NodeDownGrace: time.Millisecond},
			Ready:      func(info ReadyInfo) { ready <- info },
			Logger:     slog.New(slog.DiscardHandler),
		})
	}()
	var info ReadyInfo
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("manager: %v", err)
	}
	defer func() { cancel(); <-done }()
	local, err := api.NewClient("unix://"+info.SocketPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	var tokens api.JoinTokens
	waitFor(t, "join tokens", func() (err error) { tokens, err = local.JoinTokens(ctx); return err })

	var hollows []*Hollow
	for i := range 2 {
		e, err := simexec.New(simexec.Config{})
		if err != nil {
			t.Fatal(err)
		}
		h, err := NewHollow(ctx, HollowConfig{
			Hostname: fmt.Sprintf("h%d", i+1), Addr: "127.0.0.1", JoinAddr: fmt.Sprintf("127.0.0.1:%d", apiPort),
			JoinToken: tokens.Worker, Executor: e, Engine: api.Engine{Name: "simexec", Available: true},
		})
		if err != nil {
			t.Fatalf("join: %v", err)
		}
		h.Start(ctx)
		defer h.Stop()
		hollows = append(hollows, h)
	}
	if hollows[0].ID() == hollows[1].ID() {
		t.Fatalf("two hollow nodes share ID %s", hollows[0].ID())
	}
	nodeState := func(id string) (api.NodeView, error) { return local.Node(ctx, id) }
	for _, h := range hollows {
		waitFor(t, h.Hostname()+" ready", func() error {
			n, err := nodeState(h.ID())
			if err != nil {
				return err
			}
			if n.Status.State != api.NodeStateReady || !n.Description.Engine.Available {
				return fmt.Errorf("state %s, engine %+v", n.Status.State, n.Description.Engine)
			}
			return nil
		})
	}
	if _, err := local.CreateService(ctx, api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 4,
		Task: api.TaskSpec{Image: "hollow/none:1"}}); err != nil {
		t.Fatal(err)
	}
	running := func(h *Hollow) int { return h.Executor().(*simexec.Executor).Running() }
	waitFor(t, "4 tasks running, 2 per node", func() error {
		if a, b := running(hollows[0]), running(hollows[1]); a != 2 || b != 2 {
			return fmt.Errorf("running %d and %d", a, b)
		}
		return nil
	})

	h := hollows[0]
	h.Stop()
	h.Stop() // a second stop is a no-op
	if h.Running() {
		t.Fatal("stopped node still running")
	}
	waitFor(t, "stopped node down", func() error {
		n, err := nodeState(h.ID())
		if err != nil {
			return err
		}
		if n.Status.State != api.NodeStateDown {
			return fmt.Errorf("state %s", n.Status.State)
		}
		return nil
	})
	h.Start(ctx)
	waitFor(t, "restarted node ready, running only what it is assigned", func() error {
		n, err := nodeState(h.ID())
		if err != nil {
			return err
		}
		tasks, err := local.Tasks(ctx, api.TaskFilter{Node: h.ID()})
		if err != nil {
			return err
		}
		want := 0
		for _, t := range tasks {
			if t.DesiredState == api.TaskRunning {
				want++
			}
		}
		if n.Status.State != api.NodeStateReady || running(h) != want {
			return fmt.Errorf("state %s, running %d, assigned %d", n.Status.State, running(h), want)
		}
		return nil
	})
}
