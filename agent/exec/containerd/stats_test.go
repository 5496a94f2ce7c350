package containerd_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/testimage"
)

func TestStats(t *testing.T) {
	cfg := setup(t)
	e := newExecutor(t, cfg)
	ctx := testCtx(t)

	if _, err := e.Stats(ctx, "no-such-task"); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("Stats of a missing container: got %v, want %v", err, exec.ErrNotFound)
	}
	id := newID(t, "stats")
	// Spin a little so the cgroup counts CPU time, then idle.
	tk := task(id, api.TaskSpec{Command: []string{"sh", "-c", `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 1000`}})
	if err := e.Prepare(ctx, tk); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	t.Cleanup(func() { e.Remove(context.Background(), id) })
	if _, err := e.Stats(ctx, id); !errors.Is(err, exec.ErrNotStarted) {
		t.Errorf("Stats before Start: got %v, want %v", err, exec.ErrNotStarted)
	}
	if err := e.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var got exec.Stats
	waitFor(t, func() bool {
		var err error
		got, err = e.Stats(ctx, id)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		return got.CPUSeconds > 0.01 && got.MemoryBytes > 0
	})
	if got.MemoryBytes > 64<<20 {
		t.Errorf("memory of an idle shell: got %d bytes, want less than 64 MiB", got.MemoryBytes)
	}
	if err := e.Stop(ctx, id, time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := e.Stats(ctx, id); !errors.Is(err, exec.ErrNotStarted) {
		t.Errorf("Stats after Stop: got %v, want %v", err, exec.ErrNotStarted)
	}
}

func TestPullObserved(t *testing.T) {
	cfg := setup(t)
	testenv.Command(t, testimage.RegistryBinary)
	ctx := testCtx(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	reg, err := testimage.StartRegistry(ctx, t.TempDir(), addr)
	if err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	t.Cleanup(func() { reg.Close() })
	im, err := testimage.Build("")
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	ref := addr + "/shoal/busybox:v1"
	if err := im.Push(ctx, nil, ref); err != nil {
		t.Fatalf("Push: %v", err)
	}

	type pull struct {
		took time.Duration
		err  error
	}
	var mu sync.Mutex
	var pulls []pull
	cfg.InsecureRegistries = []string{addr}
	cfg.OnPull = func(took time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		pulls = append(pulls, pull{took, err})
	}
	e := newExecutor(t, cfg)
	// The second task finds the image and pulls nothing; the third names
	// an image the registry lacks.
	for i, ref := range []string{ref, ref, addr + "/shoal/missing:v1"} {
		id := newID(t, "pull")
		err := e.Prepare(ctx, task(id, api.TaskSpec{Image: ref, Command: []string{"true"}}))
		if (err != nil) != (i == 2) {
			t.Fatalf("Prepare %s: got %v, want an error only for the missing image", ref, err)
		}
		t.Cleanup(func() { e.Remove(context.Background(), id) })
	}
	mu.Lock()
	defer mu.Unlock()
	if len(pulls) != 2 {
		t.Fatalf("pulls observed: got %v, want 2", pulls)
	}
	if pulls[0].err != nil || pulls[0].took <= 0 {
		t.Errorf("first pull: got %v after %v, want success after some time", pulls[0].err, pulls[0].took)
	}
	if pulls[1].err == nil {
		t.Errorf("pull of a missing image: got no error, want one")
	}
}
