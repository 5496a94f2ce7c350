package dispatcher

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// assignmentWait bounds a long poll for assignments; under the client's
// 30 s answer timeout.
const assignmentWait = 15 * time.Second

// catchUpWait bounds how long an answer waits for the hub to reach the
// store index of the call's start (a change set that failed moves the
// index without an event).
const catchUpWait = 500 * time.Millisecond

// Assignments returns nodeID's tasks and network state once one of its
// tasks changed after since or the network state differs from networkSum,
// or after assignmentWait with whatever is there. since 0, or one older
// than this leader's hub, gets the complete set; otherwise the answer holds
// only the changes (api.Assignments.ApplyTo).
func (d *Dispatcher) Assignments(ctx context.Context, nodeID string, since uint64, networkSum string) (api.Assignments, error) {
	h := d.hub.Load()
	if !d.active.Load() || h == nil {
		return api.Assignments{}, ErrNotReady
	}
	d.pollStarted(nodeID)
	defer func() { d.pollEnded(nodeID, ctx.Err() != nil) }()
	// Answer no older than the store as the call found it.
	target := d.cfg.Store.Index()
	catchUp := time.NewTimer(catchUpWait)
	defer catchUp.Stop()
	timeout := time.NewTimer(assignmentWait)
	defer timeout.Stop()
	caughtUp := false
	for {
		h.mu.Lock()
		ready := h.tasks != nil
		caughtUp = caughtUp || (ready && h.index >= target)
		var out api.Assignments
		var changed bool
		if caughtUp {
			out, changed = h.answer(nodeID, since, networkSum)
		}
		moved, all, mine := h.waitFor(nodeID)
		h.mu.Unlock()
		if changed {
			return d.sent(nodeID, out), nil
		}
		if caughtUp {
			moved = nil // from now on only what concerns this node
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-timeout.C:
			if !caughtUp {
				return api.Assignments{}, ErrNotReady
			}
			return d.sent(nodeID, out), nil
		case <-catchUp.C:
			caughtUp = ready
		case <-moved:
		case <-all:
		case <-mine:
		}
	}
}

// statusBatch is the updates that go into one raft write.
type statusBatch struct {
	nodeID  string
	updates []api.TaskStatusUpdate
	done    chan error
}

// ReportStatus queues a node's task status updates for the next batched
// write and returns once that write committed.
func (d *Dispatcher) ReportStatus(ctx context.Context, nodeID string, updates []api.TaskStatusUpdate) error {
	if !d.active.Load() {
		return ErrNotReady
	}
	b := statusBatch{nodeID: nodeID, updates: updates, done: make(chan error, 1)}
	select {
	case d.statusQueue <- b:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-b.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runStatusWriter writes queued status updates, many reports per raft write.
func (d *Dispatcher) runStatusWriter(ctx context.Context) {
	for {
		var batch []statusBatch
		select {
		case <-ctx.Done():
			return
		case b := <-d.statusQueue:
			batch = append(batch, b)
		}
		// Gather what else arrives while the first waits, up to a bound.
	gather:
		for len(batch) < 256 {
			select {
			case b := <-d.statusQueue:
				batch = append(batch, b)
			default:
				break gather
			}
		}
		err := d.writeStatus(ctx, batch)
		n := 0
		for _, b := range batch {
			n += len(b.updates)
			b.done <- err
		}
		d.batchSizes.Observe(float64(n))
	}
}

// writeStatus writes a batch of reports in change sets near store.FullBytes.
func (d *Dispatcher) writeStatus(ctx context.Context, batch []statusBatch) error {
	type report struct {
		nodeID string
		u      api.TaskStatusUpdate
	}
	var all []report
	for _, b := range batch {
		for _, u := range b.updates {
			all = append(all, report{b.nodeID, u})
		}
	}
	return store.UpdateEach(ctx, d.cfg.Store, all, func(tx *store.Tx, r report) error {
		t := tx.Task(r.u.TaskID)
		if t == nil || t.NodeID != r.nodeID {
			return nil // removed meanwhile, or not this node's to report
		}
		// Only the agent moves a task past assigned, and only forward.
		if !t.Status.State.Before(r.u.Status.State) || r.u.Status.State.Before(api.TaskAccepted) {
			return nil
		}
		t.Status = r.u.Status
		if err := tx.PutTask(t); err != nil {
			return fmt.Errorf("task %s: %w", t.ID, err)
		}
		return nil
	})
}
