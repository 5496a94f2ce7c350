package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestObjectSizeLimit: an object over MaxObjectBytes is refused with
// ErrTooLarge and nothing is written; one just under it is stored.
func TestObjectSizeLimit(t *testing.T) {
	tests := []struct {
		name    string
		value   int
		wantErr error
	}{
		{"under the limit", MaxObjectBytes - 1024, nil},
		{"over the limit", MaxObjectBytes, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t)
			mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(node("n1", "h1")) })
			before := s.Index()
			err := s.Update(context.Background(), func(tx *Tx) error {
				n := tx.Node("n1")
				n.Spec.Labels["big"] = strings.Repeat("v", tt.value)
				return tx.PutNode(n)
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil {
				return
			}
			if !strings.Contains(err.Error(), "at most 1048576") {
				t.Errorf("got %q, want the limit named", err)
			}
			if s.Index() != before || len(getNode(s, "n1").Spec.Labels["big"]) != 0 {
				t.Errorf("a refused write changed the store")
			}
		})
	}
}
