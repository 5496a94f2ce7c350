package raft

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/store"
)

// TestLogSizeAfterCycles measures issue 8's raft log figure: three cycles of
// creating and removing 10,000 tasks through the real store and one raft
// node, then the log's bytes on disk against the newest snapshot's and the
// biggest (10k tasks) snapshot's. A measurement, not a test: opt in.
func TestLogSizeAfterCycles(t *testing.T) {
	testenv.OptIn(t, "SHOAL_BENCH_RAFTLOG", "writes and removes 30,000 tasks through raft")
	logger := slog.New(slog.DiscardHandler)
	st := store.New(clock.Real{}, logger)
	dir := filepath.Join(t.TempDir(), "raft")
	r, err := Open(Config{NodeID: "solo", DataDir: dir, BindAddr: "127.0.0.1:0", FSM: st, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	if err := r.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !r.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st.SetProposer(proposerFunc(r.Apply))
	ctx := context.Background()
	const tasks = 10000
	ids := make([]string, tasks)
	var maxSnap int64
	for cycle := range 3 {
		for i := range ids {
			ids[i] = fmt.Sprintf("c%dtask%05d", cycle, i)
		}
		err := store.UpdateEach(ctx, st, ids, func(tx *store.Tx, id string) error {
			return tx.PutTask(&api.Task{ID: id, ServiceID: "svc", ServiceName: "web", DesiredState: api.TaskRunning,
				Spec:   api.TaskSpec{Image: "registry:5000/app:1", Command: []string{"sh", "-c", "sleep 1d"}},
				Status: api.TaskStatus{State: api.TaskRunning, Timestamp: time.Now(), ContainerID: "c0123456789abcdef"}})
		})
		if err != nil {
			t.Fatal(err)
		}
		settle(t, r, dir)
		_, snap := sizes(t, dir)
		maxSnap = max(maxSnap, snap)
		err = store.UpdateEach(ctx, st, ids, func(tx *store.Tx, id string) error { return tx.DeleteTask(id) })
		if err != nil {
			t.Fatal(err)
		}
		settle(t, r, dir)
		logB, snapB := sizes(t, dir)
		maxSnap = max(maxSnap, snapB)
		t.Logf("cycle %d: log %d B on disk, newest snapshot %d B, biggest %d B", cycle+1, logB, snapB, maxSnap)
	}
	logB, snapB := sizes(t, dir)
	t.Logf("after 3 cycles: log %.2f MB, newest snapshot %.3f MB, biggest snapshot %.2f MB: log/biggest %.2fx",
		float64(logB)/1e6, float64(snapB)/1e6, float64(maxSnap)/1e6, float64(logB)/float64(maxSnap))
}

// settle polls until the size rule has nothing left to do.
func settle(t *testing.T, r *Raft, dir string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		_, snap := sizes(t, dir)
		if !snapshotDue(r.fsm.bytes.Load(), uint64(snap)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the size rule did not snapshot within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type proposerFunc func(ctx context.Context, data []byte) (any, error)

func (f proposerFunc) Propose(ctx context.Context, data []byte) (any, error) { return f(ctx, data) }

// sizes returns the bytes on disk (allocated blocks) of the log store and of
// the newest snapshot's state.
func sizes(t *testing.T, dir string) (logBytes, snapBytes int64) {
	t.Helper()
	var newest int64 // nanoseconds of the newest state.bin's mtime
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return err
		}
		switch {
		case strings.Contains(p, "/snapshots/"):
			if m := st.Mtim.Nano(); filepath.Base(p) == "state.bin" && m > newest {
				newest, snapBytes = m, st.Size
			}
		case strings.Contains(p, "/"+walDir+"/"):
			logBytes += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return logBytes, snapBytes
}
