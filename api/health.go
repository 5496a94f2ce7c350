package api

import (
	"errors"
	"fmt"
	"time"
)

// Docker's health check defaults, used for a zero field.
const (
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthTimeout  = 30 * time.Second
	DefaultHealthRetries  = 3
	// MaxHealthOutput bounds the check output the agent keeps and reports.
	MaxHealthOutput = 4 << 10
)

// HealthConfig is Docker's HEALTHCHECK. Test is ["CMD", arg...] (run
// directly), ["CMD-SHELL", command] (run by /bin/sh -c) or ["NONE"]
// (disabled, even if the image has one); an empty Test inherits the image's.
// Zero durations and retries mean Docker's defaults.
type HealthConfig struct {
	Test        []string      `json:"test,omitempty"`
	Interval    time.Duration `json:"interval,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	Retries     int           `json:"retries,omitempty"`
	StartPeriod time.Duration `json:"start_period,omitempty"`
}

// Disabled reports whether h turns health checks off.
func (h *HealthConfig) Disabled() bool {
	return h != nil && len(h.Test) > 0 && h.Test[0] == "NONE"
}

// Validate names what is wrong with h, or returns nil.
func (h *HealthConfig) Validate() error {
	if h == nil {
		return nil
	}
	if len(h.Test) > 0 {
		switch h.Test[0] {
		case "NONE":
			if len(h.Test) != 1 {
				return errors.New("health test NONE takes no command")
			}
		case "CMD":
			if len(h.Test) < 2 || h.Test[1] == "" {
				return errors.New("health test CMD: want a command")
			}
		case "CMD-SHELL":
			if len(h.Test) != 2 || h.Test[1] == "" {
				return errors.New("health test CMD-SHELL: want one shell command")
			}
		default:
			return fmt.Errorf("health test %q: want CMD, CMD-SHELL or NONE first", h.Test[0])
		}
	}
	if h.Interval < 0 || h.Timeout < 0 || h.StartPeriod < 0 || h.Retries < 0 {
		return errors.New("health interval, timeout, start period and retries must not be negative")
	}
	// Docker refuses sub-millisecond periods (they spin the agent).
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", h.Interval}, {"timeout", h.Timeout}, {"start period", h.StartPeriod}} {
		if d.v != 0 && d.v < time.Millisecond {
			return fmt.Errorf("health %s %v: at least 1ms", d.name, d.v)
		}
	}
	return nil
}

// Merge returns the check a task runs: h's fields (the service spec's) over the image's
// (either may be nil), with Docker's defaults for what neither sets; nil if
// there is no test or it is NONE.
func (h *HealthConfig) Merge(image *HealthConfig) *HealthConfig {
	spec := h
	var m HealthConfig
	if image != nil {
		m = *image
	}
	if spec != nil {
		if len(spec.Test) > 0 {
			m.Test = spec.Test
		}
		if spec.Interval != 0 {
			m.Interval = spec.Interval
		}
		if spec.Timeout != 0 {
			m.Timeout = spec.Timeout
		}
		if spec.Retries != 0 {
			m.Retries = spec.Retries
		}
		if spec.StartPeriod != 0 {
			m.StartPeriod = spec.StartPeriod
		}
	}
	if len(m.Test) == 0 || m.Disabled() {
		return nil
	}
	m.Test = cloneSlice(m.Test)
	if m.Interval == 0 {
		m.Interval = DefaultHealthInterval
	}
	if m.Timeout == 0 {
		m.Timeout = DefaultHealthTimeout
	}
	if m.Retries == 0 {
		m.Retries = DefaultHealthRetries
	}
	return &m
}

// Health is a task's health as its checks found it.
type Health string

const (
	// HealthStarting: no check has passed yet.
	HealthStarting  Health = "starting"
	HealthHealthy   Health = "healthy"
	HealthUnhealthy Health = "unhealthy"
)
