package main

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

// healthFlags are docker's --health-* flags, shared by create and update.
type healthFlags struct {
	set                                    func(name string) bool
	cmd, interval, timeout, retries, start string
	none                                   bool
}

func (f *healthFlags) register(fs *pflag.FlagSet) {
	f.set = fs.Changed
	fs.StringVar(&f.cmd, "health-cmd", "", `command run in the container to check its health, by /bin/sh -c ("" on update: the image's)`)
	fs.StringVar(&f.interval, "health-interval", "", "time between health checks, like 5s (default 30s)")
	fs.StringVar(&f.timeout, "health-timeout", "", "time a health check may take, like 2s (default 30s)")
	fs.StringVar(&f.retries, "health-retries", "", "failed checks in a row that make a task unhealthy (default 3)")
	fs.StringVar(&f.start, "health-start-period", "", "time a task gets to start before failed checks count (default 0s)")
	fs.BoolVar(&f.none, "no-healthcheck", false, "run no health check, not even the image's")
}

// apply returns cur (nil: none set) changed as the flags say; with no
// health flag it returns cur unchanged.
func (f *healthFlags) apply(cur *api.HealthConfig) (*api.HealthConfig, error) {
	names := []string{"health-cmd", "health-interval", "health-timeout", "health-retries", "health-start-period"}
	anySet := false
	for _, n := range names {
		anySet = anySet || f.set(n)
	}
	if f.set("no-healthcheck") && f.none {
		if anySet {
			return nil, errors.New("--no-healthcheck conflicts with the --health-* flags")
		}
		return &api.HealthConfig{Test: []string{"NONE"}}, nil
	}
	if !anySet && !f.set("no-healthcheck") {
		return cur, nil
	}
	var h api.HealthConfig
	if cur != nil {
		h = *cur
	}
	if h.Disabled() || f.set("no-healthcheck") {
		h.Test = nil // --no-healthcheck=false lifts a NONE
	}
	if f.set("health-cmd") {
		h.Test = nil
		if f.cmd != "" {
			h.Test = []string{"CMD-SHELL", f.cmd}
		}
	}
	for _, d := range []struct {
		flag, val string
		dst       *time.Duration
	}{
		{"health-interval", f.interval, &h.Interval},
		{"health-timeout", f.timeout, &h.Timeout},
		{"health-start-period", f.start, &h.StartPeriod},
	} {
		if !f.set(d.flag) {
			continue
		}
		v, err := parseDuration("--"+d.flag, d.val)
		if err != nil {
			return nil, err
		}
		if v != 0 && v < time.Millisecond {
			return nil, fmt.Errorf("--%s %q: at least 1ms", d.flag, d.val)
		}
		*d.dst = v
	}
	if f.set("health-retries") {
		n, err := strconv.Atoi(f.retries)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--health-retries %q: want a number of checks, 0 for the default", f.retries)
		}
		h.Retries = n
	}
	if h.Test == nil && h.Interval == 0 && h.Timeout == 0 && h.Retries == 0 && h.StartPeriod == 0 {
		return nil, nil
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return &h, nil
}
