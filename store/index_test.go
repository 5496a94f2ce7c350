package store

import (
	"context"
	"errors"
	"testing"
)

func TestWaitIndex(t *testing.T) {
	s, _ := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(node("n1", "alpha")) })
	if err := s.WaitIndex(context.Background(), s.Index()); err != nil {
		t.Fatalf("WaitIndex(applied): %v", err)
	}

	// A wait for the next index ends when a write applies it.
	next := s.Index() + 1
	done := make(chan error, 1)
	go func() { done <- s.WaitIndex(context.Background(), next) }()
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(node("n2", "beta")) })
	if err := <-done; err != nil {
		t.Fatalf("WaitIndex(%d) after the write: %v", next, err)
	}

	// One nobody writes ends with the context, naming both indexes.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.WaitIndex(ctx, s.Index()+5)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
