package store

import (
	"context"
	"fmt"
)

// setIndexLocked records the applied index and wakes WaitIndex callers;
// s.mu is held.
func (s *Store) setIndexLocked(index uint64) {
	s.index = index
	if s.indexMoved != nil {
		close(s.indexMoved)
		s.indexMoved = nil
	}
}

// WaitIndex returns once the store has applied the log entry at index (an
// index a write answered with, or a leader's read index), or ctx's error.
// It is how a manager that is not the leader reads its own writes.
func (s *Store) WaitIndex(ctx context.Context, index uint64) error {
	for {
		s.mu.Lock()
		if s.index >= index {
			s.mu.Unlock()
			return nil
		}
		if s.indexMoved == nil {
			s.indexMoved = make(chan struct{})
		}
		moved := s.indexMoved
		s.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, s.Index(), ctx.Err())
		}
	}
}
