package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/distribution/reference"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/agent/volume"
	"github.com/shoal-dev/shoal/api"
)

// Defaults for Config's empty fields.
const (
	DefaultNamespace   = "shoal"
	DefaultSnapshotter = "overlayfs"
	// cpuPeriod is the CFS period limits are expressed in (100 ms, as Docker).
	cpuPeriod = 100000
)

// Config says which containerd to use and where logs go.
type Config struct {
	// Address is containerd's gRPC socket.
	Address string
	// Namespace holds the task containers; DefaultNamespace when empty.
	Namespace string
	// StateDir is this executor's directory; logs go to StateDir/logs.
	StateDir string
	// InsecureRegistries are registry hosts ("host:port") pulled from over
	// plain HTTP. Loopback hosts always are.
	InsecureRegistries []string
	// Snapshotter for container root filesystems; DefaultSnapshotter when empty.
	Snapshotter string
	// OnPull, if set, is told how long each image pull that Prepare made
	// took and how it ended (an image containerd already has is no pull).
	OnPull func(took time.Duration, err error)
	// Network, if set, gives a task's prepared network: the path of the
	// network namespace to join and a resolv.conf to mount. An empty path
	// gives the container a namespace of its own with loopback only.
	Network func(t *api.Task) (netnsPath, resolvConf string, err error)
	// Files, if set, gives a task's secrets and configs (files.go).
	Files func(t *api.Task) ([]exec.File, error)
	// Volumes holds the node's named volumes; tasks with volume mounts are
	// refused without it.
	Volumes *volume.Store
	// LogBinary is a binary that runs RunLogWriter when its first argument
	// is LogWriterArg (the shoal binary): tasks with a terminal need it.
	LogBinary string
	// InitPath is the static init binary --init tasks run under; FindInit's
	// when empty (a node without one refuses --init tasks).
	InitPath string
	Logger   *slog.Logger
}

// Executor runs task containers through containerd.
type Executor struct {
	client      *containerd.Client
	ns          string
	logDir      string
	snapshotter string
	insecure    []string
	onPull      func(time.Duration, error)
	network     func(*api.Task) (string, string, error)
	files       func(*api.Task) ([]exec.File, error)
	stateDir    string
	volumes     *volume.Store
	initPath    string
	logBinary   string
	etcDir      string // hosts and resolv.conf files of tasks
	log         *slog.Logger
	// execSeq numbers exec processes, so checks never share an ID.
	execSeq atomic.Uint64
}

var (
	_ exec.Executor = (*Executor)(nil)
	_ exec.Puller   = (*Executor)(nil)
)

// New connects to containerd at cfg.Address. It fails when containerd does
// not answer within 5 seconds.
func New(cfg Config) (*Executor, error) {
	if cfg.Address == "" {
		return nil, errors.New("containerd executor: no address")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("containerd executor: no state dir")
	}
	stateDir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("containerd executor: state dir: %w", err)
	}
	e := &Executor{
		ns:          cfg.Namespace,
		logDir:      filepath.Join(stateDir, "logs"),
		snapshotter: cfg.Snapshotter,
		insecure:    slices.Clone(cfg.InsecureRegistries),
		onPull:      cfg.OnPull,
		network:     cfg.Network,
		files:       cfg.Files,
		stateDir:    stateDir,
		volumes:     cfg.Volumes,
		initPath:    cfg.InitPath,
		logBinary:   cfg.LogBinary,
		etcDir:      filepath.Join(stateDir, "etc"),
		log:         cfg.Logger,
	}
	if e.initPath == "" {
		e.initPath = FindInit()
	}
	if e.ns == "" {
		e.ns = DefaultNamespace
	}
	if e.snapshotter == "" {
		e.snapshotter = DefaultSnapshotter
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("component", "exec", "namespace", e.ns)
	for _, dir := range []string{e.logDir, e.etcDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("containerd executor: %w", err)
		}
	}
	e.client, err = containerd.New(cfg.Address, containerd.WithDefaultNamespace(e.ns), containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.Address, err)
	}
	return e, nil
}

// Close closes the connection to containerd; the containers keep running.
func (e *Executor) Close() error {
	return e.client.Close()
}

// Client is the underlying containerd client (for tests and diagnostics).
func (e *Executor) Client() *containerd.Client { return e.client }

func (e *Executor) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, e.ns)
}

// Logs returns StateDir/logs/<taskID>.log.
func (e *Executor) Logs(taskID string) string {
	return filepath.Join(e.logDir, taskID+".log")
}

// Prepare finds or pulls t's image, unpacks it, and creates the container
// with its spec: the image's config, then the task's command, env, workdir,
// user and limits. The container gets a network namespace of its own.
func (e *Executor) Prepare(ctx context.Context, t *api.Task) error {
	ctx = e.ctx(ctx)
	log := e.log.With("task", t.ID)
	if _, err := e.client.LoadContainer(ctx, t.ID); err == nil {
		log.Debug("container exists, adopting")
		return nil
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("prepare %s: %w", t.ID, err)
	}
	img, err := e.image(ctx, t.Spec.Image)
	if err != nil {
		return fmt.Errorf("prepare %s: %w", t.ID, err)
	}

	host, release, err := e.host(ctx, t, img)
	defer release()
	if err != nil {
		return fmt.Errorf("prepare %s: %w", t.ID, err)
	}
	imgSpec, err := img.Spec(ctx)
	if err != nil {
		e.removeEtc(t.ID)
		return fmt.Errorf("prepare %s: image config of %s: %w", t.ID, t.Spec.Image, err)
	}
	host.ImageEntrypoint, host.ImageCmd = imgSpec.Config.Entrypoint, imgSpec.Config.Cmd
	opts, err := taskSpecOpts(t, host)
	if err != nil {
		e.removeEtc(t.ID)
		return fmt.Errorf("prepare %s: %w", t.ID, err)
	}
	specOpts := append([]oci.SpecOpts{oci.WithImageConfig(img)}, opts...)
	fileMounts, err := e.prepareFiles(t)
	if err != nil {
		e.removeEtc(t.ID)
		return fmt.Errorf("prepare %s: %w", t.ID, err)
	}
	specOpts = append(specOpts, oci.WithMounts(fileMounts))
	labels := map[string]string{
		exec.LabelTaskID:      t.ID,
		exec.LabelServiceID:   t.ServiceID,
		exec.LabelServiceName: t.ServiceName,
		exec.LabelSlot:        strconv.FormatUint(t.Slot, 10),
	}
	if names := volumeNames(t.Spec.Mounts); len(names) > 0 {
		labels[exec.LabelVolumes] = strings.Join(names, ",")
	}
	stopSignal := containerd.WithImageStopSignal(img, "SIGTERM")
	if t.Spec.StopSignal != "" {
		labels[containerd.StopSignalLabel] = t.Spec.StopSignal
		stopSignal = func(context.Context, *containerd.Client, *containers.Container) error { return nil }
	}
	_, err = e.client.NewContainer(ctx, t.ID,
		containerd.WithImage(img),
		containerd.WithSnapshotter(e.snapshotter),
		containerd.WithNewSnapshot(t.ID, img),
		containerd.WithNewSpec(specOpts...),
		containerd.WithContainerLabels(labels),
		stopSignal,
	)
	if errdefs.IsAlreadyExists(err) {
		if _, lerr := e.client.LoadContainer(ctx, t.ID); lerr == nil {
			return nil // a concurrent Prepare won
		}
	}
	if err != nil {
		e.releaseFiles(t.ID)
		// A snapshot left behind would make the next attempt fail.
		if rerr := e.client.SnapshotService(e.snapshotter).Remove(ctx, t.ID); rerr != nil && !errdefs.IsNotFound(rerr) {
			log.Warn("remove snapshot of failed container", "err", rerr)
		}
		e.removeEtc(t.ID)
		return fmt.Errorf("prepare %s: create container: %w", t.ID, err)
	}
	log.Info("container created", "image", img.Name())
	return nil
}

// Pull finds or pulls image and unpacks it, as Prepare would.
func (e *Executor) Pull(ctx context.Context, image string) error {
	_, err := e.image(e.ctx(ctx), image)
	return err
}

// cpuQuota turns billionths of a CPU into a CFS quota per cpuPeriod; the
// kernel refuses quotas under 1 ms.
func cpuQuota(nanoCPUs int64) int64 {
	return max(nanoCPUs*cpuPeriod/1e9, 1000)
}

// shortID is the hostname a container gets: its task ID's first 12 characters.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// image returns the image named ref, pulled if containerd lacks it and
// unpacked into the snapshotter.
func (e *Executor) image(ctx context.Context, ref string) (containerd.Image, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	name := named.String()
	img, err := e.client.GetImage(ctx, name)
	if errdefs.IsNotFound(err) {
		e.log.Info("pulling image", "image", name)
		start := time.Now()
		img, err = e.client.Pull(ctx, name,
			containerd.WithResolver(e.resolver()),
			containerd.WithPullUnpack,
			containerd.WithPullSnapshotter(e.snapshotter),
		)
		took := time.Since(start)
		if e.onPull != nil {
			e.onPull(took, err)
		}
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", name, err)
		}
		e.log.Info("image pulled", "image", name, "took", took)
		return img, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	unpacked, err := img.IsUnpacked(ctx, e.snapshotter)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if !unpacked {
		if err := img.Unpack(ctx, e.snapshotter); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", name, err)
		}
	}
	return img, nil
}

func (e *Executor) resolver() remotes.Resolver {
	plain := func(host string) (bool, error) {
		if slices.Contains(e.insecure, host) {
			return true, nil
		}
		return docker.MatchLocalhost(host)
	}
	return docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(plain)),
	})
}

// Start creates the container's task with its output going to the log file,
// and starts it.
func (e *Executor) Start(ctx context.Context, taskID string) error {
	ctx = e.ctx(ctx)
	c, err := e.container(ctx, taskID)
	if err != nil {
		return fmt.Errorf("start %s: %w", taskID, err)
	}
	task, err := c.Task(ctx, nil)
	switch {
	case err == nil:
		st, err := task.Status(ctx)
		if err != nil {
			return fmt.Errorf("start %s: %w", taskID, err)
		}
		switch st.Status {
		case containerd.Created:
			if err := task.Start(ctx); err != nil {
				return fmt.Errorf("start %s: %w", taskID, err)
			}
			return nil
		case containerd.Stopped:
			return fmt.Errorf("start %s: %w", taskID, exec.ErrExited)
		default:
			return nil
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("start %s: %w", taskID, err)
	}

	spec, err := c.Spec(ctx)
	if err != nil {
		return fmt.Errorf("start %s: %w", taskID, err)
	}
	creator, err := e.taskIO(ctx, taskID, spec.Process != nil && spec.Process.Terminal)
	if err != nil {
		return fmt.Errorf("start %s: %w", taskID, err)
	}
	task, err = c.NewTask(ctx, creator)
	if err != nil {
		return fmt.Errorf("start %s: create task: %w", taskID, err)
	}
	if err := task.Start(ctx); err != nil {
		if _, derr := task.Delete(ctx, containerd.WithProcessKill); derr != nil {
			e.log.Warn("delete task that failed to start", "task", taskID, "err", derr)
		}
		return fmt.Errorf("start %s: %w", taskID, err)
	}
	e.log.Info("task started", "task", taskID, "pid", task.Pid())
	return nil
}

// container loads a task's container, mapping not-found to exec.ErrNotFound.
func (e *Executor) container(ctx context.Context, taskID string) (containerd.Container, error) {
	c, err := e.client.LoadContainer(ctx, taskID)
	if errdefs.IsNotFound(err) {
		return nil, exec.ErrNotFound
	}
	return c, err
}

// task loads a container's task, mapping not-found to exec.ErrNotFound
// (no container) or exec.ErrNotStarted (no task).
func (e *Executor) task(ctx context.Context, taskID string) (containerd.Task, error) {
	c, err := e.container(ctx, taskID)
	if err != nil {
		return nil, err
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil, exec.ErrNotStarted
	}
	return task, err
}

// Wait waits for the task's process to exit. It works on a task started by
// another Executor (or an earlier agent) and on one that already exited:
// containerd keeps the exit status until the task is removed.
func (e *Executor) Wait(ctx context.Context, taskID string) (int, error) {
	ctx = e.ctx(ctx)
	task, err := e.task(ctx, taskID)
	if err != nil {
		return -1, fmt.Errorf("wait %s: %w", taskID, err)
	}
	ch, err := task.Wait(ctx)
	if err != nil {
		return -1, fmt.Errorf("wait %s: %w", taskID, err)
	}
	select {
	case st := <-ch:
		code, _, err := st.Result()
		if err != nil {
			return -1, fmt.Errorf("wait %s: %w", taskID, err)
		}
		e.releaseFiles(taskID)
		return int(code), nil
	case <-ctx.Done():
		return -1, fmt.Errorf("wait %s: %w", taskID, ctx.Err())
	}
}

// Stop sends SIGTERM to the task's process, SIGKILL to all of the
// container's processes after grace, and returns once it exited. The task
// stays (exited) so that Wait and List still see its exit code.
func (e *Executor) Stop(ctx context.Context, taskID string, grace time.Duration) (err error) {
	defer func() {
		if err == nil {
			e.releaseFiles(taskID)
		}
	}()
	ctx = e.ctx(ctx)
	task, err := e.task(ctx, taskID)
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, exec.ErrNotStarted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop %s: %w", taskID, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return fmt.Errorf("stop %s: %w", taskID, err)
	}
	if st.Status == containerd.Stopped {
		return nil
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited, err := task.Wait(waitCtx)
	if err != nil {
		return fmt.Errorf("stop %s: %w", taskID, err)
	}
	sig := syscall.SIGTERM
	if c, err := e.container(ctx, taskID); err == nil {
		if s, err := containerd.GetStopSignal(ctx, c, syscall.SIGTERM); err == nil {
			sig = s
		}
	}
	if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: signal %d: %w", taskID, sig, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-exited:
		e.log.Info("task stopped", "task", taskID, "signal", sig)
		return nil
	case <-timer.C:
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", taskID, ctx.Err())
	}
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: sigkill: %w", taskID, err)
	}
	select {
	case <-exited:
		e.log.Info("task stopped", "task", taskID, "signal", "SIGKILL", "grace", grace)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", taskID, ctx.Err())
	}
}

// Remove kills and deletes the task, then the container, its snapshot and
// its log file.
func (e *Executor) Remove(ctx context.Context, taskID string) error {
	ctx = e.ctx(ctx)
	c, err := e.container(ctx, taskID)
	if errors.Is(err, exec.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", taskID, err)
	}
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove %s: delete task: %w", taskID, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", taskID, err)
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: delete container: %w", taskID, err)
	}
	if err := os.Remove(e.Logs(taskID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", taskID, err)
	}
	e.releaseFiles(taskID)
	e.removeEtc(taskID)
	e.log.Info("container removed", "task", taskID)
	return nil
}

// List returns the containers labelled as Shoal tasks in the namespace.
func (e *Executor) List(ctx context.Context) ([]exec.ContainerStatus, error) {
	ctx = e.ctx(ctx)
	cs, err := e.client.Containers(ctx, fmt.Sprintf("labels.%q", exec.LabelTaskID))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]exec.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		st, err := e.status(ctx, c)
		if errdefs.IsNotFound(err) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("list containers: %s: %w", c.ID(), err)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b exec.ContainerStatus) int {
		switch {
		case a.TaskID < b.TaskID:
			return -1
		case a.TaskID > b.TaskID:
			return 1
		}
		return 0
	})
	return out, nil
}

func (e *Executor) status(ctx context.Context, c containerd.Container) (exec.ContainerStatus, error) {
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return exec.ContainerStatus{}, err
	}
	slot, _ := strconv.ParseUint(info.Labels[exec.LabelSlot], 10, 64)
	st := exec.ContainerStatus{
		TaskID:      c.ID(),
		ServiceID:   info.Labels[exec.LabelServiceID],
		ServiceName: info.Labels[exec.LabelServiceName],
		Slot:        slot,
		Image:       info.Image,
		State:       exec.StateCreated,
	}
	if v := info.Labels[exec.LabelVolumes]; v != "" {
		st.Volumes = strings.Split(v, ",")
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	ts, err := task.Status(ctx)
	if err != nil {
		return st, err
	}
	switch ts.Status {
	case containerd.Created:
		st.State = exec.StateCreated
	case containerd.Running, containerd.Paused, containerd.Pausing:
		st.State = exec.StateRunning
		st.Pid = task.Pid()
	case containerd.Stopped:
		st.State = exec.StateExited
		st.ExitCode = int(ts.ExitStatus)
		st.ExitedAt = ts.ExitTime
	default:
		st.State = exec.StateUnknown
	}
	return st, nil
}
