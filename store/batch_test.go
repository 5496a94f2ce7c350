package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

// TestEntriesBoundedByBytes: many objects go in change sets near
// FullBytes, never over MaxEntryBytes; one change set over MaxEntryBytes is
// refused with ErrTooLarge and writes nothing.
func TestEntriesBoundedByBytes(t *testing.T) {
	s, _ := newStore(t)
	p := &raftProposer{s: s}
	s.SetProposer(p)
	const n = 3000
	env := []string{"PAD=" + strings.Repeat("x", 400)}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("task%05d", i)
	}
	err := UpdateEach(context.Background(), s, ids, func(tx *Tx, id string) error {
		return tx.PutTask(&api.Task{ID: id, ServiceID: "svc", Spec: api.TaskSpec{Image: "img", Env: env}})
	})
	if err != nil {
		t.Fatalf("UpdateEach: %v", err)
	}
	var count int
	s.View(func(tx ReadTx) { count = len(tx.Tasks()) })
	if count != n {
		t.Fatalf("got %d tasks, want %d", count, n)
	}
	if len(p.logs) < 4 {
		t.Fatalf("got %d entries for %d tasks of ~500 B, want several", len(p.logs), n)
	}
	for _, l := range p.logs {
		if len(l.Data) > FullBytes+2048 {
			t.Errorf("entry %d is %d bytes, want about %d at most", l.Index, len(l.Data), FullBytes)
		}
	}

	before := len(p.logs)
	err = s.Update(context.Background(), func(tx *Tx) error {
		for i := range n * 2 {
			if err := tx.PutTask(&api.Task{ID: fmt.Sprintf("big%05d", i), Spec: api.TaskSpec{Image: "img", Env: env}}); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "at most 2097152") {
		t.Fatalf("got %v, want ErrTooLarge naming the limit", err)
	}
	if len(p.logs) != before {
		t.Fatalf("a refused change set was proposed")
	}
}
