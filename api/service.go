package api

import (
	"slices"
	"strings"
	"time"
)

// ServiceMode is how a service decides its number of tasks.
type ServiceMode string

const (
	ModeReplicated ServiceMode = "replicated"
	ModeGlobal     ServiceMode = "global"
	// Jobs run their tasks to completion (see job.go).
	ModeReplicatedJob ServiceMode = "replicated-job"
	ModeGlobalJob     ServiceMode = "global-job"
)

// Service is desired state: what to run and how many.
type Service struct {
	ID   string      `json:"id"`
	Meta Meta        `json:"meta"`
	Spec ServiceSpec `json:"spec"`
	// PreviousSpec is kept for rollback.
	PreviousSpec *ServiceSpec `json:"previous_spec,omitempty"`
	// Endpoint is what the allocator gave the service: its virtual IPs.
	Endpoint EndpointStatus `json:"endpoint,omitzero"`
	// UpdateStatus is where the last rolling update (or rollback) is; nil
	// until the orchestrator starts one.
	UpdateStatus *UpdateStatus `json:"update_status,omitempty"`
	// JobIteration counts the runs of a job: every update of a job's
	// service starts a new one (see job.go).
	JobIteration uint64 `json:"job_iteration,omitempty"`
}

// UpdateState is the state of a rolling update, Swarm's names.
type UpdateState string

const (
	UpdateUpdating          UpdateState = "updating"
	UpdatePaused            UpdateState = "paused"
	UpdateCompleted         UpdateState = "completed"
	UpdateRollbackStarted   UpdateState = "rollback_started"
	UpdateRollbackPaused    UpdateState = "rollback_paused"
	UpdateRollbackCompleted UpdateState = "rollback_completed"
)

// RollingBack reports whether s is a rollback's state.
func (s UpdateState) RollingBack() bool {
	return s == UpdateRollbackStarted || s == UpdateRollbackPaused || s == UpdateRollbackCompleted
}

// UpdateStatus is kept in the store, so a new leader resumes an update where
// it was: progress itself is derived from the tasks' specs.
type UpdateStatus struct {
	State       UpdateState `json:"state"`
	Message     string      `json:"message,omitempty"`
	StartedAt   time.Time   `json:"started_at,omitzero"`
	CompletedAt time.Time   `json:"completed_at,omitzero"`
}

// UpdateOrder says whether a slot's old task stops before its new one starts.
type UpdateOrder string

const (
	OrderStopFirst  UpdateOrder = "stop-first"
	OrderStartFirst UpdateOrder = "start-first"
)

// FailureAction is what an update does when too many new tasks fail.
type FailureAction string

const (
	ActionPause    FailureAction = "pause"
	ActionContinue FailureAction = "continue"
	ActionRollback FailureAction = "rollback"
)

// UpdateConfig is how tasks are replaced when the spec changes (or rolled
// back), as Swarm's: the API fills Swarm's defaults for a nil config.
type UpdateConfig struct {
	// Parallelism is how many slots are replaced at once; 0 means all.
	Parallelism uint64 `json:"parallelism"`
	// Delay is the wait after a slot's new task is ready before that
	// worker takes the next slot.
	Delay         time.Duration `json:"delay,omitempty"`
	FailureAction FailureAction `json:"failure_action"`
	// Monitor is how long after the last new task is ready failures still
	// count against the update.
	Monitor time.Duration `json:"monitor"`
	// MaxFailureRatio is the fraction of slots whose new tasks may fail
	// before FailureAction applies (0: any failure).
	MaxFailureRatio float64     `json:"max_failure_ratio,omitempty"`
	Order           UpdateOrder `json:"order"`
}

// DefaultUpdateConfig is Swarm's default for updates and rollbacks.
func DefaultUpdateConfig() UpdateConfig {
	return UpdateConfig{Parallelism: 1, FailureAction: ActionPause, Monitor: 5 * time.Second, Order: OrderStopFirst}
}

// ServiceSpec is what a user asks for.
type ServiceSpec struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels,omitempty"`
	Mode     ServiceMode       `json:"mode"`
	Replicas uint64            `json:"replicas,omitempty"`
	Task     TaskSpec          `json:"task"`
	// Networks are the IDs of the overlay networks the tasks join; the API
	// takes names or IDs and stores IDs.
	Networks []string `json:"networks,omitempty"`
	// Aliases are more names the service resolves by on its networks, as
	// Swarm's network aliases: a stack's service STACK_NAME is also NAME.
	Aliases []string `json:"aliases,omitempty"`
	// Endpoint is how the service is reached: vip or dnsrr, published ports.
	Endpoint EndpointSpec `json:"endpoint,omitzero"`
	// Update and Rollback say how tasks are replaced; nil means Swarm's
	// defaults (DefaultUpdateConfig).
	Update   *UpdateConfig `json:"update_config,omitempty"`
	Rollback *UpdateConfig `json:"rollback_config,omitempty"`
	// MaxConcurrent is how many tasks of a replicated job run at once; 0
	// means all of them (Replicas, the job's total completions).
	MaxConcurrent uint64 `json:"max_concurrent,omitempty"`
}

// TaskSpec is the template every task of a service runs.
type TaskSpec struct {
	Image string `json:"image"`
	// Command replaces the image's cmd when set (the image's entrypoint
	// stays, docker's meaning; Entrypoint replaces that).
	Command         []string      `json:"command,omitempty"`
	Env             []string      `json:"env,omitempty"`
	User            string        `json:"user,omitempty"`
	Workdir         string        `json:"workdir,omitempty"`
	Resources       Resources     `json:"resources"`
	Restart         RestartPolicy `json:"restart"`
	Placement       Placement     `json:"placement"`
	StopGracePeriod time.Duration `json:"stop_grace_period,omitempty"`
	// ForceUpdate is bumped by service update --force: a changed spec that
	// replaces every task, rolling.
	ForceUpdate uint64 `json:"force_update,omitempty"`
	// Healthcheck overrides the image's HEALTHCHECK field by field; nil
	// keeps the image's, Test ["NONE"] turns checks off.
	Healthcheck *HealthConfig `json:"healthcheck,omitempty"`
	// Secrets and Configs are files put into the task (api/secret.go).
	Secrets []SecretReference `json:"secrets,omitempty"`
	Configs []ConfigReference `json:"configs,omitempty"`

	// Container settings, docker's flags (api/taskspec.go, ValidateRuntime).
	Mounts []Mount `json:"mounts,omitempty"`
	// Entrypoint replaces the image's entrypoint; Command is then its
	// arguments (replacing the image's cmd), docker's meaning.
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Hostname   string            `json:"hostname,omitempty"`
	Groups     []string          `json:"groups,omitempty"`
	ReadOnly   bool              `json:"read_only,omitempty"`
	Init       bool              `json:"init,omitempty"`
	CapAdd     []string          `json:"cap_add,omitempty"`
	CapDrop    []string          `json:"cap_drop,omitempty"`
	Sysctls    map[string]string `json:"sysctls,omitempty"`
	Ulimits    []Ulimit          `json:"ulimits,omitempty"`
	StopSignal string            `json:"stop_signal,omitempty"`
	DNS        *DNSConfig        `json:"dns,omitempty"`
	// Hosts are extra /etc/hosts entries, "host:ip" or "ip host [alias...]".
	Hosts []string `json:"hosts,omitempty"`
	TTY   bool     `json:"tty,omitempty"`
}

// Resources are what a task reserves (for scheduling) and may use at most (enforced).
type Resources struct {
	Reservations ResourceAmounts `json:"reservations"`
	Limits       ResourceAmounts `json:"limits"`
}

// ResourceAmounts are CPU in billionths of a CPU and memory in bytes.
type ResourceAmounts struct {
	NanoCPUs    int64 `json:"nano_cpus,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
}

// RestartCondition says when a finished task is replaced.
type RestartCondition string

const (
	RestartAny       RestartCondition = "any"
	RestartOnFailure RestartCondition = "on-failure"
	RestartNone      RestartCondition = "none"
)

// DefaultRestartDelay is Swarm's wait before a finished task is replaced
// when the restart policy names no delay.
const DefaultRestartDelay = 5 * time.Second

// RestartPolicy is Swarm's.
type RestartPolicy struct {
	Condition RestartCondition `json:"condition"`
	// Delay is the wait before a finished task is replaced; nil means
	// DefaultRestartDelay, so an explicit 0 (restart at once) differs from
	// no choice. Repeated quick exits of a slot wait longer (backoff, see
	// the orchestrator).
	Delay *time.Duration `json:"delay,omitempty"`
	// MaxAttempts of 0 means no limit.
	MaxAttempts uint64 `json:"max_attempts,omitempty"`
	// Window, when set, counts against MaxAttempts only the slot's tasks
	// that finished within it (Swarm's); 0 counts them all.
	Window time.Duration `json:"window,omitempty"`
}

// RestartDelay is the policy's delay, or DefaultRestartDelay if it has none.
func (p RestartPolicy) RestartDelay() time.Duration {
	if p.Delay == nil {
		return DefaultRestartDelay
	}
	return *p.Delay
}

// Placement restricts and orders the nodes a task may go to.
type Placement struct {
	// Constraints like "node.labels.zone==a", "node.role!=manager",
	// "node.hostname==h1", "node.id==ID", "node.platform.os==linux".
	Constraints []string `json:"constraints,omitempty"`
	// Preferences spread tasks over the values of node labels, the first
	// preference first (see placement.go).
	Preferences []PlacementPreference `json:"preferences,omitempty"`
	// MaxReplicas caps the tasks of the service on one node; 0: no cap.
	MaxReplicas uint64 `json:"max_replicas_per_node,omitempty"`
}

// TaskState is where a task is in its life.
type TaskState string

// Task states in order; a task only moves forward.
const (
	TaskNew       TaskState = "new"
	TaskPending   TaskState = "pending"
	TaskAssigned  TaskState = "assigned"
	TaskAccepted  TaskState = "accepted"
	TaskPreparing TaskState = "preparing"
	TaskStarting  TaskState = "starting"
	TaskRunning   TaskState = "running"
	TaskComplete  TaskState = "complete"
	TaskShutdown  TaskState = "shutdown"
	TaskFailed    TaskState = "failed"
	TaskRejected  TaskState = "rejected"
	TaskOrphaned  TaskState = "orphaned"
)

var taskStateOrder = map[TaskState]int{
	TaskNew: 0, TaskPending: 1, TaskAssigned: 2, TaskAccepted: 3, TaskPreparing: 4, TaskStarting: 5,
	TaskRunning: 6, TaskComplete: 7, TaskShutdown: 8, TaskFailed: 9, TaskRejected: 10, TaskOrphaned: 11,
}

// Before reports whether s comes before o in a task's life.
func (s TaskState) Before(o TaskState) bool { return taskStateOrder[s] < taskStateOrder[o] }

// Terminal reports whether a task in s is finished for good.
func (s TaskState) Terminal() bool { return taskStateOrder[s] >= taskStateOrder[TaskComplete] }

// Task is one scheduled instance of a service.
type Task struct {
	ID          string `json:"id"`
	Meta        Meta   `json:"meta"`
	ServiceID   string `json:"service_id"`
	ServiceName string `json:"service_name"`
	// Slot numbers replicated tasks from 1; global tasks have slot 0 and a node.
	Slot   uint64   `json:"slot"`
	NodeID string   `json:"node_id,omitempty"`
	Spec   TaskSpec `json:"spec"`
	// SpecVersion is the service's Meta.Version the spec was taken from.
	SpecVersion  uint64     `json:"spec_version"`
	DesiredState TaskState  `json:"desired_state"`
	Status       TaskStatus `json:"status"`
	// Networks are the task's addresses, one per network of its service
	// (and the ingress network when the service publishes ports), given by
	// the allocator before the task is scheduled.
	Networks []NetworkAttachment `json:"networks,omitempty"`
	// QuickExits counts the tasks before this one in its slot that ended,
	// one after the other, soon after they started (or never started):
	// the orchestrator waits longer before each further restart.
	QuickExits uint64 `json:"quick_exits,omitempty"`
	// JobIteration is the run of a job the task belongs to (the service's
	// JobIteration when it was created).
	JobIteration uint64 `json:"job_iteration,omitempty"`
	// HostPorts are the host-mode ports of its service when it was made:
	// bound on its node only, so the scheduler keeps two tasks needing
	// one of them off the same node.
	HostPorts []PortConfig `json:"host_ports,omitempty"`
}

// TaskStatus is what managers and the agent observed.
type TaskStatus struct {
	State     TaskState `json:"state"`
	Timestamp time.Time `json:"timestamp"`
	Message   string    `json:"message,omitempty"`
	// Err says why a task failed, or why the scheduler could not place it.
	Err         string `json:"err,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	ExitCode    int    `json:"exit_code,omitempty"`
	// StartedAt is when the agent reported the task running, carried in
	// every later report; zero if it never ran. The orchestrator tells a
	// quick exit (backoff) from a long run by it.
	StartedAt time.Time `json:"started_at,omitzero"`
	// Health is set for a task with a health check: starting until a check
	// passes (the task stays starting meanwhile), then healthy.
	Health Health `json:"health,omitempty"`
	// HealthOutput is the last check's output (at most MaxHealthOutput bytes).
	HealthOutput string `json:"health_output,omitempty"`
}

// ServiceUpdate changes a service; nil fields are left alone.
type ServiceUpdate struct {
	// Version must be the version read, so concurrent updates do not
	// overwrite each other; 0 skips the check.
	Version  uint64       `json:"version,omitempty"`
	Replicas *uint64      `json:"replicas,omitempty"`
	Spec     *ServiceSpec `json:"spec,omitempty"`
	// Rollback swaps the spec with PreviousSpec and rolls the tasks back
	// under the rollback config; it takes no Spec or Replicas.
	Rollback bool `json:"rollback,omitempty"`
}

// ServiceView is a service as the API shows it, with its replica counts.
type ServiceView struct {
	Service
	// Desired is the number of tasks the service wants running.
	Desired uint64 `json:"desired"`
	// Running is the number of its tasks running now.
	Running uint64 `json:"running"`
	// Completed is, for a job, the number of its tasks of the current
	// run that completed (Desired is then the completions wanted).
	Completed uint64 `json:"completed,omitempty"`
}

// TaskFilter selects tasks in a listing; empty fields match everything.
type TaskFilter struct {
	Service string `json:"service,omitempty"`
	Node    string `json:"node,omitempty"`
}

// Assignments is what the dispatcher hands a node: every task the node should
// know about, with its desired state, and the state of its networks. The
// first answer is the complete set; later ones, asked with the Index and
// NetworkSum of the last, carry only what changed. ApplyTo merges them.
type Assignments struct {
	// Index is the store index they were read at; pass it back to wait for a change.
	Index uint64 `json:"index"`
	// Tasks is the node's complete task set, or with Changes only the tasks
	// that changed since the index asked for.
	Tasks []*Task `json:"tasks"`
	// Changes says Tasks and Removed are changes to the set the node holds.
	Changes bool `json:"changes,omitempty"`
	// Removed lists the IDs of tasks gone from the node since that index.
	Removed []string `json:"removed,omitempty"`
	// Network is the state of the networks these tasks join, unless NetworkSame.
	Network NetworkState `json:"network"`
	// NetworkSame says the network state is still the one the node asked with.
	NetworkSame bool `json:"network_same,omitempty"`
	// NetworkSum identifies the network state; pass it back so a change to it ends the wait.
	NetworkSum string `json:"network_sum"`
	// Secrets and Configs are the ones the Tasks of this answer reference,
	// for tasks that should run; a node drops those its tasks no longer need.
	Secrets []*Secret `json:"secrets,omitempty"`
	Configs []*Config `json:"configs,omitempty"`
}

// ApplyTo returns the node's tasks (by ID) and network state once a is
// applied to the ones it held.
func (a Assignments) ApplyTo(tasks []*Task, network NetworkState) ([]*Task, NetworkState) {
	if !a.NetworkSame {
		network = a.Network
	}
	if !a.Changes {
		return a.Tasks, network
	}
	byID := make(map[string]*Task, len(tasks)+len(a.Tasks))
	for _, t := range tasks {
		byID[t.ID] = t
	}
	for _, id := range a.Removed {
		delete(byID, id)
	}
	for _, t := range a.Tasks {
		byID[t.ID] = t
	}
	out := make([]*Task, 0, len(byID))
	for _, t := range byID {
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y *Task) int { return strings.Compare(x.ID, y.ID) })
	return out, network
}

// TaskStatusUpdate is one observed change of a task on a node.
type TaskStatusUpdate struct {
	TaskID string     `json:"task_id"`
	Status TaskStatus `json:"status"`
}
