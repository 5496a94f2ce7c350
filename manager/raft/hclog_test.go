package raft

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func decodeRecords(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("decode log: %v", err)
		}
		out = append(out, m)
	}
	return out
}

func TestHclogAdapter(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHclog(logger, "raft")

	h.Named("transport").With("peer", "m1").Warn("failed to contact", "time", 3)
	h.Trace("dropped: below the handler's level")
	h.Debug("kept")
	std := h.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	std.Print("[ERR] raft: from the standard logger")

	if h.IsTrace() || !h.IsDebug() || !h.IsError() {
		t.Fatalf("got trace %v debug %v error %v, want false true true", h.IsTrace(), h.IsDebug(), h.IsError())
	}
	h.SetLevel(hclog.Warn)
	h.Info("dropped: below SetLevel")
	if got := h.GetLevel(); got != hclog.Warn {
		t.Fatalf("got level %v, want %v", got, hclog.Warn)
	}

	recs := decodeRecords(t, &buf)
	want := []struct{ level, msg, logger string }{
		{"WARN", "failed to contact", "raft.transport"},
		{"DEBUG", "kept", "raft"},
		{"ERROR", "raft: from the standard logger", "raft"},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records %v, want %d", len(recs), recs, len(want))
	}
	for i, w := range want {
		r := recs[i]
		if r["level"] != w.level || r["msg"] != w.msg || r["logger"] != w.logger {
			t.Errorf("record %d: got %v, want %+v", i, r, w)
		}
	}
	if recs[0]["peer"] != "m1" || recs[0]["time"] != float64(3) {
		t.Errorf("got %v, want peer=m1 and time=3", recs[0])
	}
}
