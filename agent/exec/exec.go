package exec

import (
	"context"
	"errors"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// Labels put on every task container, so a restarted agent can tell which
// task and service a container it finds belongs to.
const (
	LabelTaskID      = "com.shoal.task.id"
	LabelServiceID   = "com.shoal.service.id"
	LabelServiceName = "com.shoal.service.name"
	LabelSlot        = "com.shoal.task.slot"
	// LabelVolumes lists the named volumes the container mounts, by comma.
	LabelVolumes = "com.shoal.task.volumes"
)

// Errors an Executor returns, checked with errors.Is.
var (
	// ErrNotFound: no container exists for the task.
	ErrNotFound = errors.New("exec: container not found")
	// ErrNotStarted: the container exists but its process was never started.
	ErrNotStarted = errors.New("exec: task not started")
	// ErrExited: the task's process already ran and exited; it is not restarted.
	ErrExited = errors.New("exec: task already exited")
)

// State is what an Executor sees of a task's container.
type State string

const (
	// StateCreated: the container exists, its process is not running yet.
	StateCreated State = "created"
	// StateRunning: the process runs (or is paused).
	StateRunning State = "running"
	// StateExited: the process ran and exited; ExitCode holds its status.
	StateExited State = "exited"
	// StateUnknown: the engine could not say.
	StateUnknown State = "unknown"
)

// ContainerStatus is one task container an Executor found.
type ContainerStatus struct {
	TaskID      string
	ServiceID   string
	ServiceName string
	Slot        uint64
	Image       string
	State       State
	// Pid is the process's host pid while it runs.
	Pid uint32
	// ExitCode and ExitedAt are set in StateExited; a process killed by a
	// signal exits 128+signal.
	ExitCode int
	ExitedAt time.Time
	// Volumes are the named volumes the container mounts.
	Volumes []string
}

// Executor runs the containers of tasks on one node. The container of a task
// is named after the task's ID. Implementations are safe for concurrent use.
type Executor interface {
	// Prepare pulls the image if needed (plain HTTP for insecure registries)
	// and creates the container for t; idempotent: an existing container for
	// t is adopted.
	Prepare(ctx context.Context, t *api.Task) error
	// Start starts the prepared container's process; starting a running one
	// is a no-op, starting an exited one fails with ErrExited.
	Start(ctx context.Context, taskID string) error
	// Wait returns when the task's process exits, with its exit code.
	Wait(ctx context.Context, taskID string) (exitCode int, err error)
	// Stop sends SIGTERM, then SIGKILL after grace; it returns once the
	// process has exited. Stopping a task that is not running is a no-op.
	Stop(ctx context.Context, taskID string, grace time.Duration) error
	// Remove deletes the container, its process (killed if still running),
	// its filesystem and its log; removing a missing container is a no-op.
	Remove(ctx context.Context, taskID string) error
	// List returns the tasks whose containers exist (for re-adoption after an
	// agent restart), with state.
	List(ctx context.Context) ([]ContainerStatus, error)
	// Logs returns the file the task's stdout and stderr go to.
	Logs(taskID string) (path string)
	// Stats returns what the task's cgroup counts of its resource use. It
	// fails with ErrNotFound for a missing container and ErrNotStarted for
	// one whose process does not run.
	Stats(ctx context.Context, taskID string) (Stats, error)
}

// Puller is an Executor that can fetch an image apart from preparing a
// container, so the worker bounds pulls (network and disk heavy, long)
// separately from container starts (CPU heavy, short). Prepare of an
// Executor that is no Puller pulls inside the start limit.
type Puller interface {
	// Pull makes image present and unpacked, pulling it if missing; an
	// image already present costs a lookup.
	Pull(ctx context.Context, image string) error
}

// Stats is a running task's resource use, as its cgroup counts it.
type Stats struct {
	// CPUSeconds is the CPU time the task's processes used since it
	// started, user and system.
	CPUSeconds float64
	// MemoryBytes is the memory the task uses now, without the page cache
	// the kernel can reclaim at once (usage less inactive file pages, as
	// docker stats shows it).
	MemoryBytes uint64
}

// Checker is an Executor that can run health checks: a command inside a
// task's running container, and the HEALTHCHECK its image names. The
// worker runs no checks on an Executor that is no Checker.
type Checker interface {
	// Exec runs args in the task's running container with the process
	// settings of its main process (env, user, workdir), killing it when
	// ctx ends. It returns the exit code and the first api.MaxHealthOutput
	// bytes of stdout and stderr together; err is set when the command
	// could not run or was killed.
	Exec(ctx context.Context, taskID string, args []string) (exitCode int, output string, err error)
	// ImageHealthcheck returns the HEALTHCHECK of a present image, nil if
	// it has none.
	ImageHealthcheck(ctx context.Context, image string) (*api.HealthConfig, error)
}
