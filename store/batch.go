package store

import (
	"context"
	"fmt"
)

// UpdateEach writes items in as many Updates as it takes to keep each change
// set near FullBytes: each Update calls fn for the next items until its tx is
// Full, and a retried Update starts again at its first item. fn's error
// stops everything; earlier batches stay written.
func UpdateEach[T any](ctx context.Context, s *Store, items []T, fn func(tx *Tx, item T) error) error {
	for i := 0; i < len(items); {
		next := i
		err := s.Update(ctx, func(tx *Tx) error {
			next = i
			for next < len(items) && (next == i || !tx.Full()) {
				if err := fn(tx, items[next]); err != nil {
					return err
				}
				next++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("batch from item %d of %d: %w", i, len(items), err)
		}
		i = next
	}
	return nil
}
