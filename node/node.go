package node

import (
	"context"
	"errors"
)

// Run starts the node described by cfg and serves until ctx ends or the
// node leaves the cluster.
func Run(ctx context.Context, cfg Config) error {
	return errors.New("node: not implemented yet")
}
