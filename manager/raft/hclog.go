package raft

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// slogTrace is the slog level hclog's Trace maps to (below Debug).
const slogTrace = slog.LevelDebug - 4

// hclogAdapter is an hclog.Logger that writes to a *slog.Logger, so the output of
// hashicorp/raft and its transport lands in the process's structured log.
type hclogAdapter struct {
	logger  *slog.Logger // implied args already attached
	name    string
	implied []any
	level   *atomic.Int32 // minimum hclog.Level, shared by derived loggers like hclog does
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// newHclog returns an hclog.Logger that routes to logger. Level filtering is left to the
// slog handler unless SetLevel is called.
func newHclog(logger *slog.Logger, name string) hclog.Logger {
	lvl := new(atomic.Int32)
	lvl.Store(int32(hclog.Trace))
	return &hclogAdapter{logger: logger, name: name, level: lvl}
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slogTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // NoLevel, Info
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	min := hclog.Level(a.level.Load())
	if min == hclog.Off || (l != hclog.NoLevel && l < min) {
		return false
	}
	return a.logger.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if !a.enabled(level) {
		return
	}
	if a.name != "" {
		args = append([]any{"logger", a.name}, args...)
	}
	a.logger.Log(context.Background(), slogLevel(level), msg, args...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	c.logger = a.logger.With(args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }
func (a *hclogAdapter) GetLevel() hclog.Level      { return hclog.Level(a.level.Load()) }

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	infer := opts != nil && opts.InferLevels
	force := hclog.NoLevel
	if opts != nil {
		force = opts.ForceLevel
	}
	return &stdWriter{a: a, infer: infer, force: force}
}

// stdWriter logs each line written by a standard library *log.Logger.
type stdWriter struct {
	a     *hclogAdapter
	infer bool
	force hclog.Level
}

var levelPrefixes = []struct {
	prefix string
	level  hclog.Level
}{
	{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
	{"[WARN]", hclog.Warn}, {"[ERR]", hclog.Error}, {"[ERROR]", hclog.Error},
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg := strings.TrimSpace(string(line))
		if msg == "" {
			continue
		}
		level := hclog.Info
		if w.force != hclog.NoLevel {
			level = w.force
		}
		if w.infer {
			// "2024/01/01 00:00:00 [WARN] text" with or without the timestamp.
			for _, lp := range levelPrefixes {
				if i := strings.Index(msg, lp.prefix); i >= 0 {
					level = lp.level
					msg = strings.TrimSpace(msg[i+len(lp.prefix):])
					break
				}
			}
		}
		w.a.Log(level, msg)
	}
	return len(p), nil
}
