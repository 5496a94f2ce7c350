package exectest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/agent/exec/exectest"
	"github.com/shoal-dev/shoal/api"
)

func TestFakeStats(t *testing.T) {
	ctx := context.Background()
	f := exectest.New("/logs")
	if _, err := f.Stats(ctx, "t1"); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("Stats of a missing container: got %v, want %v", err, exec.ErrNotFound)
	}
	if err := f.SetStats("t1", exec.Stats{}); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("SetStats of a missing container: got %v, want %v", err, exec.ErrNotFound)
	}
	if err := f.Prepare(ctx, &api.Task{ID: "t1"}); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	want := exec.Stats{CPUSeconds: 1.5, MemoryBytes: 4096}
	if err := f.SetStats("t1", want); err != nil {
		t.Fatalf("SetStats: %v", err)
	}
	if _, err := f.Stats(ctx, "t1"); !errors.Is(err, exec.ErrNotStarted) {
		t.Errorf("Stats before Start: got %v, want %v", err, exec.ErrNotStarted)
	}
	if err := f.Start(ctx, "t1"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got, err := f.Stats(ctx, "t1"); err != nil || got != want {
		t.Errorf("Stats: got %+v, %v, want %+v", got, err, want)
	}
	f.Fail = func(op, id string) error {
		if op == "stats" {
			return errors.New("engine down")
		}
		return nil
	}
	if _, err := f.Stats(ctx, "t1"); err == nil {
		t.Errorf("Stats with Fail set: got no error, want one")
	}
}
