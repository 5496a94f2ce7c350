package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/content"
	"github.com/distribution/reference"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
)

var _ exec.Checker = (*Executor)(nil)

// cleanupTimeout bounds the kill and delete of a check process, done on a
// context of their own since the check's may have ended.
const cleanupTimeout = 10 * time.Second

// Exec runs args in the task's container as a second process with its main
// process's settings (env, user, cwd, capabilities), as docker exec does.
func (e *Executor) Exec(ctx context.Context, taskID string, args []string) (int, string, error) {
	ctx = e.ctx(ctx)
	c, err := e.container(ctx, taskID)
	if err != nil {
		return -1, "", fmt.Errorf("exec in %s: %w", taskID, err)
	}
	task, err := e.task(ctx, taskID)
	if err != nil {
		return -1, "", fmt.Errorf("exec in %s: %w", taskID, err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return -1, "", fmt.Errorf("exec in %s: spec: %w", taskID, err)
	}
	p := *spec.Process
	p.Args = args
	p.Terminal = false
	out := &boundedBuffer{max: api.MaxHealthOutput}
	id := fmt.Sprintf("health-%d-%d", time.Now().UnixNano(), e.execSeq.Add(1))
	proc, err := task.Exec(ctx, id, &p, cio.NewCreator(cio.WithStreams(nil, out, out)))
	if err != nil {
		return -1, "", fmt.Errorf("exec in %s: %w", taskID, err)
	}
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	defer func() {
		if _, err := proc.Delete(cleanup, containerd.WithProcessKill); err != nil {
			e.log.Warn("delete health check process", "task", taskID, "err", err)
		}
	}()
	exited, err := proc.Wait(cleanup)
	if err != nil {
		return -1, "", fmt.Errorf("exec in %s: wait: %w", taskID, err)
	}
	if err := proc.Start(ctx); err != nil {
		return -1, "", fmt.Errorf("exec in %s: start: %w", taskID, err)
	}
	select {
	case st := <-exited:
		// The output is complete once the process's pipes are drained.
		proc.IO().Wait()
		return int(st.ExitCode()), out.String(), st.Error()
	case <-ctx.Done():
		if err := proc.Kill(cleanup, syscall.SIGKILL); err != nil {
			e.log.Warn("kill health check process", "task", taskID, "err", err)
		}
		select {
		case <-exited:
		case <-cleanup.Done():
		}
		return -1, out.String(), fmt.Errorf("exec in %s: %w", taskID, ctx.Err())
	}
}

// boundedBuffer keeps the first max bytes written to it and drops the rest,
// so a chatty check neither blocks nor grows the agent.
type boundedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - len(b.b); room > 0 {
		b.b = append(b.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

// ImageHealthcheck reads the HEALTHCHECK of a present image from its
// config blob (docker's image config carries it under config.Healthcheck;
// OCI's has no such field, so containerd's parsed config drops it).
func (e *Executor) ImageHealthcheck(ctx context.Context, ref string) (*api.HealthConfig, error) {
	ctx = e.ctx(ctx)
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	img, err := e.client.GetImage(ctx, named.String())
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", named, err)
	}
	desc, err := img.Config(ctx)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", named, err)
	}
	blob, err := content.ReadBlob(ctx, img.ContentStore(), desc)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", named, err)
	}
	return parseImageHealthcheck(blob)
}

// parseImageHealthcheck returns the Healthcheck of a docker image config
// (durations in nanoseconds), nil if it has none.
func parseImageHealthcheck(blob []byte) (*api.HealthConfig, error) {
	var cfg struct {
		Config struct {
			Healthcheck *struct {
				Test        []string
				Interval    time.Duration
				Timeout     time.Duration
				StartPeriod time.Duration
				Retries     int
			}
		} `json:"config"`
	}
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	h := cfg.Config.Healthcheck
	if h == nil || len(h.Test) == 0 {
		return nil, nil
	}
	hc := &api.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
	if err := hc.Validate(); err != nil {
		return nil, fmt.Errorf("image health check: %w", err)
	}
	return hc, nil
}
