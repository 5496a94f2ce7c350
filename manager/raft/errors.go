package raft

import (
	"errors"
	"fmt"

	hraft "github.com/hashicorp/raft"
)

var (
	// ErrNotLeader is returned (wrapped in a *NotLeaderError) when a write or a membership
	// change is attempted on a node that is not the leader.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrNoQuorum is returned when an entry or a configuration change is not committed
	// before the context ends, or when leadership is lost while waiting for it.
	ErrNoQuorum = errors.New("raft: no quorum")
	// ErrShutdown is returned by operations on a node that has been shut down.
	ErrShutdown = errors.New("raft: shut down")
	// ErrExistingState is returned by Bootstrap when the node already has raft state.
	ErrExistingState = errors.New("raft: existing state, refusing to bootstrap")
)

// NotLeaderError says which node leads, if any is known, so a caller can forward to it.
// errors.Is(err, ErrNotLeader) holds for it.
type NotLeaderError struct {
	LeaderID   string // "" when no leader is known
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" && e.LeaderAddr == "" {
		return ErrNotLeader.Error() + " (no leader known)"
	}
	return fmt.Sprintf("%s (leader is %s at %s)", ErrNotLeader, e.LeaderID, e.LeaderAddr)
}

// Unwrap makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// notLeader builds the error naming the currently known leader.
func (r *Raft) notLeader() error {
	addr, id := r.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// mapErr turns a hashicorp/raft error from operation op into one of this package's errors.
func (r *Raft) mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hraft.ErrNotLeader), errors.Is(err, hraft.ErrLeadershipTransferInProgress):
		return r.notLeader()
	case errors.Is(err, hraft.ErrLeadershipLost):
		return fmt.Errorf("%w: leadership lost before %s committed (outcome unknown)", ErrNoQuorum, op)
	case errors.Is(err, hraft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %s not accepted by the leader loop before the deadline", ErrNoQuorum, op)
	case errors.Is(err, hraft.ErrRaftShutdown):
		return fmt.Errorf("%s: %w", op, ErrShutdown)
	case errors.Is(err, hraft.ErrCantBootstrap):
		return ErrExistingState
	default:
		return fmt.Errorf("raft: %s: %w", op, err)
	}
}
