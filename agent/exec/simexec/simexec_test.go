package simexec

import (
	"context"
	"errors"
	"testing"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
)

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	task := &api.Task{ID: "t1", ServiceName: "web", Slot: 1}
	if err := e.Start(ctx, "t1"); !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("start before prepare: got %v, want ErrNotFound", err)
	}
	if err := e.Prepare(ctx, task); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if got := e.Running(); got != 1 {
		t.Fatalf("running: got %d, want 1", got)
	}
	list, _ := e.List(ctx)
	if len(list) != 1 || list[0].State != exec.StateRunning || list[0].ServiceName != "web" {
		t.Fatalf("list: got %+v, want t1 running", list)
	}
	if _, err := e.Stats(ctx, "t1"); err != nil {
		t.Fatalf("stats of a running task: %v", err)
	}
	if err := e.Stop(ctx, "t1", 0); err != nil {
		t.Fatal(err)
	}
	if code, err := e.Wait(ctx, "t1"); err != nil || code != 143 {
		t.Fatalf("wait: got %d, %v, want 143, nil", code, err)
	}
	if err := e.Start(ctx, "t1"); !errors.Is(err, exec.ErrExited) {
		t.Fatalf("start of an exited task: got %v, want ErrExited", err)
	}
	if err := e.Remove(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if list, _ := e.List(ctx); len(list) != 0 {
		t.Fatalf("list after remove: got %+v, want none", list)
	}
}

func TestFailureRate(t *testing.T) {
	tests := []struct {
		rate    float64
		wantErr error
	}{
		{0, nil},
		{1, ErrSimulated},
	}
	for _, tt := range tests {
		e, err := New(Config{FailureRate: tt.rate})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := e.Prepare(ctx, &api.Task{ID: "t"}); err != nil {
			t.Fatal(err)
		}
		if err := e.Start(ctx, "t"); !errors.Is(err, tt.wantErr) {
			t.Errorf("rate %v: got %v, want %v", tt.rate, err, tt.wantErr)
		}
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{{FailureRate: -0.1}, {FailureRate: 1.5}, {StartLatency: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): got nil error, want one", cfg)
		}
	}
}

func TestLatencyEndsWithContext(t *testing.T) {
	e, err := New(Config{PrepareLatency: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Prepare(ctx, &api.Task{ID: "t"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("prepare with a cancelled context: got %v, want context.Canceled", err)
	}
}
