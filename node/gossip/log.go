package gossip

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// logWriter receives memberlist's *log.Logger output, one line per Write, and
// routes it into slog at the level named by the line's "[LEVEL]" prefix.
// onLine, if set, sees every message (without its level prefix); it must not block.
type logWriter struct {
	log    *slog.Logger
	onLine func(msg string)
}

var logLevels = []struct {
	prefix string
	level  slog.Level
}{
	{"[TRACE]", slog.LevelDebug - 4},
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

func (w *logWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		level, msg := parseLogLine(string(line))
		if msg == "" {
			continue
		}
		if w.onLine != nil {
			w.onLine(msg)
		}
		w.log.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// parseLogLine splits "[WARN] memberlist: something" into a level and
// "something". Lines without a known prefix are logged at info.
func parseLogLine(line string) (slog.Level, string) {
	line = strings.TrimSpace(line)
	level := slog.LevelInfo
	for _, l := range logLevels {
		if rest, ok := strings.CutPrefix(line, l.prefix); ok {
			level, line = l.level, strings.TrimSpace(rest)
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}

// suspectFromLog returns the node named by memberlist's log line for a probe
// that failed and made this node suspect it. memberlist has no API for the
// suspect state, so this line is the only place it shows.
func suspectFromLog(msg string) (string, bool) {
	rest, ok := strings.CutPrefix(msg, "Suspect ")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, " has failed, no acks received")
	return id, ok && id != ""
}
