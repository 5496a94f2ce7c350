package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
)

// checkResult is how one health check ended.
type checkResult struct {
	ok     bool
	output string
	at     time.Time // when the check started
}

// healthState follows one task's checks by Docker's rules: a passing check
// makes it healthy and clears the failing streak; a failing one adds to the
// streak, except while the task has never been healthy and is within its
// start period; Retries failures in a row make it unhealthy.
type healthState struct {
	cfg     api.HealthConfig
	started time.Time // when the container's process started
	health  api.Health
	streak  int
}

func newHealthState(cfg api.HealthConfig, started time.Time, health api.Health) *healthState {
	return &healthState{cfg: cfg, started: started, health: health}
}

// observe records r and reports whether the health changed.
func (h *healthState) observe(r checkResult) bool {
	was := h.health
	switch {
	case r.ok:
		h.streak = 0
		h.health = api.HealthHealthy
	case h.health == api.HealthStarting && r.at.Sub(h.started) < h.cfg.StartPeriod:
		// Failures while the task warms up do not count.
	default:
		h.streak++
		if h.streak >= h.cfg.Retries {
			h.health = api.HealthUnhealthy
		}
	}
	return h.health != was
}

// healthCheck returns the check t runs: its spec's over its image's, nil
// when there is none, it is turned off or the executor runs no checks.
func (w *Worker) healthCheck(ctx context.Context, t *api.Task) *api.HealthConfig {
	c, ok := w.exec.(exec.Checker)
	if !ok || t.Spec.Healthcheck.Disabled() {
		return nil
	}
	img, err := c.ImageHealthcheck(ctx, t.Spec.Image)
	if err != nil {
		// The spec's check, if any, still runs; the image's is lost.
		w.log.Warn("read the image's health check", "task", t.ID, "image", t.Spec.Image, "err", err)
	}
	return t.Spec.Healthcheck.Merge(img)
}

// probe runs cfg's check in the task's container every interval and sends
// each result to out, until ctx ends. A check longer than the timeout is
// killed and fails.
func (w *Worker) probe(ctx context.Context, id string, cfg *api.HealthConfig, out chan<- checkResult) {
	c := w.exec.(exec.Checker)
	args := cfg.Test[1:]
	if cfg.Test[0] == "CMD-SHELL" {
		args = []string{"/bin/sh", "-c", cfg.Test[1]}
	}
	tick, stop := w.clock.NewTicker(cfg.Interval)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		r := checkResult{at: w.clock.Now()}
		cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		code, output, err := c.Exec(cctx, id, args)
		timedOut := cctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		output = strings.TrimSpace(output)
		switch {
		case timedOut:
			r.output = fmt.Sprintf("health check exceeded its timeout (%v)", cfg.Timeout)
		case err != nil && !errors.Is(err, exec.ErrNotStarted):
			r.output = fmt.Sprintf("health check could not run: %v", err)
		case err != nil:
			continue // the process is gone; Wait reports that
		case code != 0:
			r.output = output
			if r.output == "" {
				r.output = fmt.Sprintf("health check exited %d", code)
			}
		default:
			r.ok, r.output = true, output
		}
		select {
		case out <- r:
		case <-ctx.Done():
			return
		}
	}
}
