package gossip

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []Meta{{}, {Role: "manager", API: "10.0.0.1:2377"}, {Role: "worker"}}
	for _, m := range tests {
		b, err := encodeMeta(m, "abc")
		if err != nil {
			t.Fatalf("encode %+v: %v", m, err)
		}
		got, session, err := decodeMeta(b)
		if err != nil || got != m || session != "abc" {
			t.Errorf("round trip %+v: got %+v, %q, %v; want %+v, abc, nil", m, got, session, err, m)
		}
	}
	if _, err := encodeMeta(Meta{API: strings.Repeat("x", 512)}, ""); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("512-byte API: got %v, want %v", err, ErrMetaTooLarge)
	}
	if _, _, err := decodeMeta([]byte("{")); err == nil {
		t.Error("decode of truncated JSON: got nil error")
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"r":"manager","a":"1.2.3.4:2377","s":"00"}`))
	f.Add([]byte(`null`))
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, s, err := decodeMeta(b)
		if err != nil && (m != Meta{} || s != "") {
			t.Errorf("error %v with non-empty result %+v %q", err, m, s)
		}
	})
}

func FuzzDecodeLeaveIntent(f *testing.F) {
	f.Add(encodeLeaveIntent(leaveIntent{ID: "n1", Session: "s"}))
	f.Add([]byte{msgLeaveIntent})
	f.Fuzz(func(t *testing.T, b []byte) {
		li, err := decodeLeaveIntent(b)
		if err == nil && (li.ID == "" || li.Session == "") {
			t.Errorf("accepted %q as %+v", b, li)
		}
	})
}

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		line    string
		level   slog.Level
		msg     string
		suspect string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", slog.LevelDebug, "Stream connection from=127.0.0.1:1", ""},
		{"[INFO] memberlist: Suspect n3 has failed, no acks received", slog.LevelInfo, "Suspect n3 has failed, no acks received", "n3"},
		{"[WARN] memberlist: Refuting a suspect message (from: n2)", slog.LevelWarn, "Refuting a suspect message (from: n2)", ""},
		{"[ERR] memberlist: Push/Pull with n2 failed: EOF", slog.LevelError, "Push/Pull with n2 failed: EOF", ""},
		{"[ERROR] memberlist: x", slog.LevelError, "x", ""},
		{"no prefix at all", slog.LevelInfo, "no prefix at all", ""},
	}
	for _, tt := range tests {
		level, msg := parseLogLine(tt.line)
		if level != tt.level || msg != tt.msg {
			t.Errorf("parseLogLine(%q): got %v %q, want %v %q", tt.line, level, msg, tt.level, tt.msg)
		}
		id, ok := suspectFromLog(msg)
		if id != tt.suspect || ok != (tt.suspect != "") {
			t.Errorf("suspectFromLog(%q): got %q %v, want %q", msg, id, ok, tt.suspect)
		}
	}
}

func TestLogWriterRoutesLevels(t *testing.T) {
	var rec recorder
	var seen []string
	w := &logWriter{log: slog.New(&rec), onLine: func(m string) { seen = append(seen, m) }}
	if _, err := w.Write([]byte("[WARN] memberlist: one\n[DEBUG] memberlist: two\n")); err != nil {
		t.Fatal(err)
	}
	want := []string{"WARN one", "DEBUG two"}
	if strings.Join(rec.got, ",") != strings.Join(want, ",") {
		t.Errorf("records: got %v, want %v", rec.got, want)
	}
	if len(seen) != 2 {
		t.Errorf("onLine calls: got %v, want 2", seen)
	}
}

// recorder is a slog.Handler that keeps "LEVEL message" for each record.
type recorder struct{ got []string }

func (r *recorder) Enabled(_ context.Context, _ slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.got = append(r.got, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }
