package exectest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/agent/exec/exectest"
	"github.com/shoal-dev/shoal/api"
)

func TestFakeLifecycle(t *testing.T) {
	ctx := context.Background()
	f := exectest.New("/logs")
	tk := &api.Task{ID: "t1", ServiceID: "s1", ServiceName: "web", Slot: 1, Spec: api.TaskSpec{Image: "busybox"}}
	if err := f.Prepare(ctx, tk); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := f.Wait(ctx, "t1"); !errors.Is(err, exec.ErrNotStarted) {
		t.Errorf("Wait before Start: got %v, want %v", err, exec.ErrNotStarted)
	}
	if err := f.Start(ctx, "t1"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	done := make(chan int, 1)
	go func() {
		code, _ := f.Wait(ctx, "t1")
		done <- code
	}()
	if err := f.Exit("t1", 4); err != nil {
		t.Fatalf("Exit: %v", err)
	}
	if got := <-done; got != 4 {
		t.Errorf("Wait: got %d, want 4", got)
	}
	if err := f.Start(ctx, "t1"); !errors.Is(err, exec.ErrExited) {
		t.Errorf("Start after exit: got %v, want %v", err, exec.ErrExited)
	}
	if err := f.Remove(ctx, "t1"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got, want := f.Logs("t1"), "/logs/t1.log"; got != want {
		t.Errorf("Logs: got %q, want %q", got, want)
	}
	ops := f.Ops()
	want := []string{"prepare t1", "wait t1", "start t1", "wait t1", "start t1", "remove t1"}
	if !slices.Equal(ops, want) {
		t.Errorf("Ops: got %v, want %v", ops, want)
	}
}

func TestFakeStopAddFail(t *testing.T) {
	ctx := context.Background()
	f := exectest.New("")
	f.Add(exec.ContainerStatus{TaskID: "old", State: exec.StateRunning})
	list, _ := f.List(ctx)
	if len(list) != 1 || list[0].TaskID != "old" || list[0].Pid == 0 {
		t.Fatalf("List: got %+v, want one running container old with a pid", list)
	}
	if err := f.Stop(ctx, "old", time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if code, err := f.Wait(ctx, "old"); err != nil || code != 143 {
		t.Errorf("Wait: got %d, %v, want 143", code, err)
	}

	boom := errors.New("boom")
	f.Fail = func(op, id string) error {
		if op == "prepare" {
			return boom
		}
		return nil
	}
	if err := f.Prepare(ctx, &api.Task{ID: "t2"}); !errors.Is(err, boom) {
		t.Errorf("Prepare: got %v, want %v", err, boom)
	}
	if _, ok := f.Status("t2"); ok {
		t.Errorf("a failed Prepare created a container")
	}
}
