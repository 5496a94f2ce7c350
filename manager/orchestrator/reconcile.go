package orchestrator

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/scheduler"
)

// HistoryLimit is how many tasks a slot (a node, for a global service) keeps:
// the one that holds it and the most recent finished ones. A restart policy
// with MaxAttempts keeps MaxAttempts+1 when that is more, so the attempts can
// still be counted from the tasks.
const HistoryLimit = 5

// Status messages the orchestrator writes on the tasks it creates or stops.
const (
	MsgPending     = "pending task scheduling"
	MsgNodeDown    = "node down"
	MsgNodeDrained = "node drained"
	MsgNodeRemoved = "node removed"
	MsgConstraints = "node no longer satisfies the placement constraints"
)

// Plan is what one reconciliation wants written, all in one transaction.
type Plan struct {
	// Create holds new tasks (Meta.Version 0).
	Create []*api.Task
	// Update holds changed copies of existing tasks (Meta.Version as read).
	Update []*api.Task
	// Delete holds the IDs of tasks to remove.
	Delete []string
	// Service is a changed copy of the service (Meta.Version as read): its
	// UpdateStatus moved on, or its spec swapped for a rollback.
	Service *api.Service
	// NextWake is when a delayed restart comes due, or the rolling update's
	// next step; zero means none.
	NextWake time.Time
}

// Empty reports whether the plan writes nothing (NextWake aside).
func (p Plan) Empty() bool {
	return len(p.Create) == 0 && len(p.Update) == 0 && len(p.Delete) == 0 && p.Service == nil
}

// Reconcile computes what to write for one service given all its tasks and
// all the nodes. svc nil means the service was deleted: its tasks are shut
// down and deleted. Reconcile is pure (no store, no clock): run it again on
// the state its plan produces and it returns an empty plan.
//
// The rules are Swarm's:
//
//   - A task holds its slot (its node, for a global service) while its
//     desired state is running or earlier. It occupies the slot while its
//     status is not terminal; once the status is terminal it has finished and
//     waits for the restart policy.
//   - Replicated: slots 1..Replicas each get exactly one holder; tasks in other
//     slots are shut down (scale down); empty slots get a new pending task
//     without a node (scale up). When two tasks hold one slot, the newest one
//     that occupies it stays.
//   - Global: each ready, active node satisfying the constraints gets one task
//     with that node preset and slot 0. Tasks on nodes that are down, drained,
//     removed or no longer match the constraints are shut down and not
//     replaced. Paused nodes, and nodes in an unknown state, keep their tasks
//     as they are and get none.
//   - A replicated task occupying a slot on a node that is down, drained or
//     removed is shut down and replaced in the same slot at once.
//   - A task whose spec is older than the service's (SpecVersion below
//     svc.Meta.Version and a different TaskSpec) is replaced when
//     PlanUpdate says so (rolling update, see there); a finished one at
//     once. With start-first order the old task keeps its slot until the
//     new one is ready (taskReady), then it is shut down.
//   - A finished task is replaced under its restart policy: any restarts
//     everything, on-failure everything but complete (as Swarm: a task that
//     reached failed, rejected, shutdown or orphaned while it should run
//     did not succeed), none nothing. The replacement is created at the
//     finish time (Status.Timestamp) plus the delay (Plan.NextWake until
//     then), at once if the task's node is down, drained or removed. The
//     delay is the policy's (5 s if unset, as Swarm), backed off when the
//     slot's tasks keep exiting quickly (RestartDelay). MaxAttempts > 0
//     stops restarting once the slot has that many tasks of the same spec
//     beyond the first (replacements after node failures count, as in Swarm).
//   - A replaced task gets desired state shutdown. A finished task that is
//     not restarted gets desired state complete: it keeps holding its slot, so
//     the slot is not refilled, until the service scales below it or its spec
//     changes. Swarm sets shutdown and re-evaluates the restart policy on
//     every pass; recording the decision in the task keeps it stable when
//     history is trimmed and survives a change of leader.
//   - History: a slot keeps HistoryLimit tasks, deleting its oldest tasks that
//     no longer hold it and have stopped (terminal status, no node, or a node
//     that was removed). Slots beyond Replicas and removed nodes keep none.
//   - Deleted service: tasks with a terminal status, no node, or a node down or
//     removed are deleted; the others get desired state shutdown and are
//     deleted once the agent reports them stopped.
func Reconcile(now time.Time, svc *api.Service, tasks []*api.Task, nodes []*api.Node) Plan {
	r := &reconciler{
		now:     now,
		svc:     svc,
		nodes:   make(map[string]*api.Node, len(nodes)),
		updated: make(map[string]*api.Task),
		deleted: make(map[string]bool),
	}
	for _, n := range nodes {
		r.nodes[n.ID] = n
	}
	sorted := slices.Clone(tasks)
	slices.SortFunc(sorted, olderFirst)
	if svc != nil && svc.Spec.Mode.IsJob() {
		r.job = true // no rolling updates: every update is a new run
	} else if svc != nil {
		r.specJSON = specKey(&svc.Spec.Task)
		r.outdatedMemo = make(map[*api.Task]bool, len(sorted))
		up := planUpdate(now, svc, sorted, r.outdated)
		if up.Status != nil {
			c := *svc
			c.UpdateStatus = up.Status
			if up.Rollback {
				prev := c.Spec
				c.Spec, c.PreviousSpec = *svc.PreviousSpec, &prev
			}
			r.plan.Service = &c
			if up.Rollback {
				// The rollback replaces tasks from the next pass on,
				// against the swapped spec as stored.
				return r.plan
			}
			svc = &c
			r.svc = svc
		}
		r.replace, r.startFirst = up.Replace, up.StartFirst
		r.wake(up.NextWake)
	}
	switch {
	case svc == nil:
		r.removed(sorted)
	case svc.Spec.Mode == api.ModeReplicatedJob:
		r.replicatedJob(sorted)
	case svc.Spec.Mode.IsGlobal():
		r.specJSON = specKey(&svc.Spec.Task)
		cs, err := scheduler.ParseConstraints(svc.Spec.Task.Placement.Constraints)
		r.constraints, r.constraintsOK = cs, err == nil
		r.global(sorted)
	default:
		r.specJSON = specKey(&svc.Spec.Task)
		r.replicated(sorted)
	}
	return r.finish()
}

type reconciler struct {
	now           time.Time
	svc           *api.Service
	specJSON      []byte
	nodes         map[string]*api.Node
	replace       map[slotKey]bool // slots the rolling update replaces now
	outdatedMemo  map[*api.Task]bool
	startFirst    bool
	constraints   []scheduler.Constraint
	constraintsOK bool
	// job: the service runs to completion (see job.go).
	job bool

	plan    Plan
	order   []string             // IDs of updated tasks, in the order first changed
	updated map[string]*api.Task // changed copies, by ID
	deleted map[string]bool
}

func (r *reconciler) finish() Plan {
	for _, id := range r.order {
		if !r.deleted[id] {
			r.plan.Update = append(r.plan.Update, r.updated[id])
		}
	}
	return r.plan
}

// retireSlotsBeyond groups tasks by slot and retires the slots past want
// (and slot 0), highest first: a scale down. It returns the groups.
func (r *reconciler) retireSlotsBeyond(tasks []*api.Task, want uint64) map[uint64][]*api.Task {
	bySlot := make(map[uint64][]*api.Task)
	for _, t := range tasks {
		bySlot[t.Slot] = append(bySlot[t.Slot], t)
	}
	var extra []uint64
	for s := range bySlot {
		if s == 0 || s > want {
			extra = append(extra, s)
		}
	}
	slices.Sort(extra)
	slices.Reverse(extra)
	for _, s := range extra {
		r.retire(bySlot[s], "")
		r.trim(bySlot[s], 0, 0)
	}
	return bySlot
}

func (r *reconciler) replicated(tasks []*api.Task) {
	want := r.svc.Spec.Replicas
	bySlot := r.retireSlotsBeyond(tasks, want)
	limit := r.historyLimit()
	for s := uint64(1); s <= want; s++ {
		created := r.fill(bySlot[s], s, "", true)
		r.trim(bySlot[s], created, limit)
	}
}

func (r *reconciler) global(tasks []*api.Task) {
	byNode := make(map[string][]*api.Task)
	for _, t := range tasks {
		byNode[t.NodeID] = append(byNode[t.NodeID], t)
	}
	ids := make([]string, 0, len(r.nodes)+len(byNode))
	for id := range r.nodes {
		ids = append(ids, id)
	}
	for id := range byNode {
		if r.nodes[id] == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	limit := r.historyLimit()
	for _, id := range ids {
		ts := byNode[id]
		n := r.nodes[id]
		switch {
		case n == nil:
			r.retire(ts, MsgNodeRemoved)
			r.trim(ts, 0, 0)
		case n.Status.State == api.NodeStateDown:
			r.retire(ts, MsgNodeDown)
			r.trim(ts, 0, limit)
		case n.Spec.Availability == api.AvailabilityDrain:
			r.retire(ts, MsgNodeDrained)
			r.trim(ts, 0, limit)
		case !r.matches(n):
			r.retire(ts, MsgConstraints)
			r.trim(ts, 0, limit)
		case n.Status.State == api.NodeStateReady && n.Spec.Availability == api.AvailabilityActive:
			created := r.fill(r.currentRun(ts), 0, id, true)
			r.trim(ts, created, limit)
		default: // paused, or not known to be ready: leave it be
			r.fill(ts, 0, id, false)
			r.trim(ts, 0, limit)
		}
	}
}

func (r *reconciler) removed(tasks []*api.Task) {
	for _, t := range tasks {
		n := r.nodes[t.NodeID]
		if t.Status.State.Terminal() || t.NodeID == "" || n == nil || n.Status.State == api.NodeStateDown {
			r.del(t)
			continue
		}
		if holds(t) {
			r.set(t, api.TaskShutdown, "")
		}
	}
}

// fill keeps one holder in a slot (tasks oldest first) and replaces it when
// needed; start false only settles duplicates. It returns the number of
// tasks created (0 or 1).
func (r *reconciler) fill(tasks []*api.Task, slot uint64, nodeID string, start bool) int {
	h := r.settle(tasks)
	key := slotKey{slot: slot, node: nodeID}
	if !start {
		return 0
	}
	quickExits := uint64(0) // carried to the replacement of a restarted task
	replace := func(msg string) int {
		if h != nil {
			r.set(h, api.TaskShutdown, msg)
		}
		r.create(slot, nodeID, quickExits)
		return 1
	}
	switch {
	case h == nil:
		return replace("")
	case occupies(h):
		if msg := r.nodeProblem(h.NodeID); msg != "" {
			return replace(msg)
		}
		if r.outdated(h) && r.replace[key] {
			if r.startFirst {
				r.create(slot, nodeID, 0)
				return 1
			}
			return replace("")
		}
	case finished(h):
		if r.outdated(h) {
			return replace("")
		}
		if !shouldRestart(h, tasks, r.now) {
			r.set(h, api.TaskComplete, "")
			return 0
		}
		quickExits = QuickExits(h)
		due := finishedAt(h).Add(RestartDelay(h, quickExits))
		if r.nodeProblem(h.NodeID) != "" {
			due = r.now
		}
		if r.now.Before(due) {
			r.wake(due)
			return 0
		}
		return replace("")
	default: // done: finished and not restarted
		if r.outdated(h) {
			return replace("")
		}
	}
	return 0
}

// settle picks the task that holds a slot, preferring the newest that
// occupies it, then the newest finished one waiting for a restart, then the
// newest done one, and shuts down every other holder.
func (r *reconciler) settle(tasks []*api.Task) *api.Task {
	var h *api.Task
	rank := func(t *api.Task) int {
		switch {
		case occupies(t):
			return 3
		case finished(t):
			return 2
		case done(t):
			return 1
		}
		return 0
	}
	for _, t := range tasks { // oldest first: a later task of the same rank wins
		if rank(t) > 0 && (h == nil || rank(t) >= rank(h)) {
			h = t
		}
	}
	// Start-first: the old task runs on until its replacement is ready.
	keepOld := r.startFirst && h != nil && occupies(h) && !taskReady(h) && !r.outdated(h)
	for _, t := range tasks {
		if t != h && holds(t) && !(keepOld && occupies(t) && r.outdated(t)) {
			r.set(t, api.TaskShutdown, "")
		}
	}
	return h
}

// retire shuts down every task holding the slot, with msg on those still
// running.
func (r *reconciler) retire(tasks []*api.Task, msg string) {
	for _, t := range tasks {
		if !holds(t) {
			continue
		}
		if t.Status.State.Terminal() {
			r.set(t, api.TaskShutdown, "")
		} else {
			r.set(t, api.TaskShutdown, msg)
		}
	}
}

// trim deletes the oldest stopped tasks of a slot until it holds at most
// limit tasks, counting the created ones.
func (r *reconciler) trim(tasks []*api.Task, created, limit int) {
	n := created
	for _, t := range tasks {
		if !r.deleted[t.ID] {
			n++
		}
	}
	for _, t := range tasks {
		if n <= limit {
			return
		}
		if t = r.cur(t); !r.deleted[t.ID] && r.stopped(t) {
			r.del(t)
			n--
		}
	}
}

// stopped reports whether t neither holds its slot nor can still be running.
func (r *reconciler) stopped(t *api.Task) bool {
	return !holds(t) && (t.Status.State.Terminal() || t.NodeID == "" || r.nodes[t.NodeID] == nil)
}

func (r *reconciler) historyLimit() int {
	if m := r.svc.Spec.Task.Restart.MaxAttempts; m+1 > HistoryLimit {
		return int(min(m+1, 1<<20))
	}
	return HistoryLimit
}

// nodeProblem says why a task on node id must move, or "".
func (r *reconciler) nodeProblem(id string) string {
	if id == "" {
		return ""
	}
	n := r.nodes[id]
	switch {
	case n == nil:
		return MsgNodeRemoved
	case n.Status.State == api.NodeStateDown:
		return MsgNodeDown
	case n.Spec.Availability == api.AvailabilityDrain:
		return MsgNodeDrained
	}
	return ""
}

func (r *reconciler) matches(n *api.Node) bool {
	if !r.constraintsOK {
		return false
	}
	for _, c := range r.constraints {
		if !c.Match(n) {
			return false
		}
	}
	return true
}

// outdated reports whether t runs an older spec than the service's. The
// answer is remembered: a spec's JSON costs, and the updater asks too.
func (r *reconciler) outdated(t *api.Task) bool {
	if r.job {
		return t.JobIteration != r.svc.JobIteration
	}
	if o, ok := r.outdatedMemo[t]; ok {
		return o
	}
	o := r.svc.Meta.Version > t.SpecVersion && (!bytes.Equal(specKey(&t.Spec), r.specJSON) || networksChanged(t, r.svc) || hostPortsChanged(t, r.svc))
	if r.outdatedMemo == nil {
		r.outdatedMemo = make(map[*api.Task]bool)
	}
	r.outdatedMemo[t] = o
	return o
}

// networksChanged reports whether an allocated task is attached to other
// networks than its service now names (plus ingress for published ports).
func networksChanged(t *api.Task, svc *api.Service) bool {
	if t.Status.State == api.TaskPending && len(t.Networks) == 0 {
		return false // not allocated yet: the allocator follows the new spec
	}
	have := map[string]bool{}
	for _, a := range t.Networks {
		have[a.NetworkID] = true
	}
	for _, id := range svc.Spec.Networks {
		if !have[id] {
			return true
		}
		delete(have, id)
	}
	if len(svc.Spec.Endpoint.IngressPorts()) > 0 {
		return len(have) != 1 // the ingress attachment
	}
	return len(have) != 0
}

// hostPortsChanged reports whether a task binds other host-mode ports than
// its service now publishes: it must be replaced to bind the new ones.
func hostPortsChanged(t *api.Task, svc *api.Service) bool {
	return !slices.Equal(t.HostPorts, svc.Spec.Endpoint.HostPorts())
}

func (r *reconciler) wake(at time.Time) {
	if r.plan.NextWake.IsZero() || at.Before(r.plan.NextWake) {
		r.plan.NextWake = at
	}
}

// cur returns the task as this plan has it so far.
func (r *reconciler) cur(t *api.Task) *api.Task {
	if u, ok := r.updated[t.ID]; ok {
		return u
	}
	return t
}

// set changes a task's desired state (and, when msg is set, its status
// message) in the plan.
func (r *reconciler) set(t *api.Task, desired api.TaskState, msg string) {
	u, ok := r.updated[t.ID]
	if !ok {
		c := *t
		u = &c
		r.updated[t.ID] = u
		r.order = append(r.order, t.ID)
	}
	u.DesiredState = desired
	if msg != "" {
		u.Status.Message = msg
	}
}

func (r *reconciler) del(t *api.Task) {
	if !r.deleted[t.ID] {
		r.deleted[t.ID] = true
		r.plan.Delete = append(r.plan.Delete, t.ID)
	}
}

func (r *reconciler) create(slot uint64, nodeID string, quickExits uint64) {
	spec := r.svc.Spec.Task
	spec.Command = slices.Clone(spec.Command)
	spec.Env = slices.Clone(spec.Env)
	spec.Placement.Constraints = slices.Clone(spec.Placement.Constraints)
	r.plan.Create = append(r.plan.Create, &api.Task{
		ID:           api.NewID(),
		ServiceID:    r.svc.ID,
		ServiceName:  r.svc.Spec.Name,
		Slot:         slot,
		NodeID:       nodeID,
		Spec:         spec,
		SpecVersion:  r.svc.Meta.Version,
		DesiredState: api.TaskRunning,
		Status:       api.TaskStatus{State: api.TaskPending, Timestamp: r.now, Message: MsgPending},
		QuickExits:   quickExits,
		JobIteration: r.svc.JobIteration,
		HostPorts:    r.svc.Spec.Endpoint.HostPorts(),
	})
}

// wantsRun: desired state running or earlier.
func wantsRun(t *api.Task) bool { return !api.TaskRunning.Before(t.DesiredState) }

// occupies: should run and has not finished.
func occupies(t *api.Task) bool { return wantsRun(t) && !t.Status.State.Terminal() }

// finished: should run but has stopped; the restart policy decides.
func finished(t *api.Task) bool { return wantsRun(t) && t.Status.State.Terminal() }

// done: finished and not to be restarted; it still holds its slot.
func done(t *api.Task) bool { return t.DesiredState == api.TaskComplete }

func holds(t *api.Task) bool { return wantsRun(t) || done(t) }

func shouldRestart(t *api.Task, slot []*api.Task, now time.Time) bool {
	p := t.Spec.Restart
	switch p.Condition {
	case api.RestartNone:
		return false
	case api.RestartOnFailure:
		if t.Status.State == api.TaskComplete {
			return false
		}
	}
	if p.MaxAttempts == 0 {
		return true
	}
	key := specKey(&t.Spec)
	n := uint64(0)
	for _, o := range slot {
		if p.Window > 0 && o.Status.State.Terminal() && now.Sub(finishedAt(o)) > p.Window {
			continue
		}
		if bytes.Equal(specKey(&o.Spec), key) {
			n++
		}
	}
	return n <= p.MaxAttempts // n-1 restarts so far (within the window)
}

// Restart backoff: a slot whose tasks keep exiting soon after they start
// waits longer before each restart, so a broken image or command costs a
// few tasks a minute, not one per raft round trip.
const (
	// QuickRun is how long a task must have run for its exit not to count
	// as quick.
	QuickRun = time.Minute
	// MaxRestartDelay caps the backoff.
	MaxRestartDelay = 5 * time.Minute
	// minBackoffBase is what the backoff doubles when the policy's delay is
	// shorter (an explicit 0 restarts once at once, then backs off).
	minBackoffBase = time.Second
)

// QuickExits is how many tasks of t's slot in a row, t included, ended
// quickly: t's count plus one if t ran less than QuickRun (or never ran),
// else 0.
func QuickExits(t *api.Task) uint64 {
	started := t.Status.StartedAt
	if !started.IsZero() && finishedAt(t).Sub(started) >= QuickRun {
		return 0
	}
	return t.QuickExits + 1
}

// RestartDelay is how long after it finished the task t is replaced, given
// quickExits (see QuickExits): the policy's delay for the first quick exit
// and after a long run; from the second in a row on, the delay (at least
// minBackoffBase) doubled for each further one, plus up to 10 % jitter
// taken from t's ID (so slots that fail together spread out, and the plan
// stays a pure function of the state), at most MaxRestartDelay.
func RestartDelay(t *api.Task, quickExits uint64) time.Duration {
	base := t.Spec.Restart.RestartDelay()
	if quickExits <= 1 {
		return base
	}
	d := max(base, minBackoffBase)
	for i := uint64(1); i < quickExits && d < MaxRestartDelay; i++ {
		d *= 2
	}
	h := fnv.New32a()
	h.Write([]byte(t.ID))
	d += d / 100 * time.Duration(h.Sum32()%11)
	return max(min(d, MaxRestartDelay), base) // a longer delay asked stays
}

func finishedAt(t *api.Task) time.Time {
	if !t.Status.Timestamp.IsZero() {
		return t.Status.Timestamp
	}
	return t.Meta.UpdatedAt
}

// specKey is a spec's JSON form: the form the store keeps, so nil and empty
// lists compare equal.
func specKey(s *api.TaskSpec) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		return nil // a TaskSpec always encodes
	}
	return b
}

func olderFirst(a, b *api.Task) int {
	if c := a.Meta.CreatedAt.Compare(b.Meta.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}
