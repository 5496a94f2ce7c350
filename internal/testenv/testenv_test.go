package testenv

import (
	"path/filepath"
	"strings"
	"testing"
)

// recorder records what a helper asked of the test instead of stopping it.
type recorder struct{ skipped, failed string }

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.skipped = args[0].(string) }
func (r *recorder) Fatal(args ...any) { r.failed = args[0].(string) }

func TestRequire(t *testing.T) {
	present := filepath.Join(t.TempDir())
	tests := []struct {
		name     string
		ci       string
		check    func(TB)
		wantSkip bool
		wantFail bool
	}{
		{"met, developer", "", func(r TB) { Require(r, true, "x") }, false, false},
		{"met, CI", "1", func(r TB) { Require(r, true, "x") }, false, false},
		{"missing, developer", "", func(r TB) { Require(r, false, "x") }, true, false},
		{"missing, CI=1", "1", func(r TB) { Require(r, false, "x") }, false, true},
		{"missing, CI=true", "true", func(r TB) { Require(r, false, "x") }, false, true},
		{"missing, CI=0", "0", func(r TB) { Require(r, false, "x") }, true, false},
		{"command missing, CI", "1", func(r TB) { Command(r, "shoal-no-such-command") }, false, true},
		{"command present, CI", "1", func(r TB) { Command(r, "sh") }, false, false},
		{"file missing, developer", "", func(r TB) { File(r, "/nonexistent/shoal") }, true, false},
		{"file present, CI", "1", func(r TB) { File(r, present) }, false, false},
		{"opt-in unset, CI", "1", func(r TB) { OptIn(r, "SHOAL_TESTENV_UNSET", "x") }, true, false},
		{"after a failure, CI", "1", func(r TB) { After(r, false, "x") }, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{}
			tt.check(r)
			if got := r.skipped != ""; got != tt.wantSkip {
				t.Errorf("skipped: got %v (%q), want %v", got, r.skipped, tt.wantSkip)
			}
			if got := r.failed != ""; got != tt.wantFail {
				t.Errorf("failed: got %v (%q), want %v", got, r.failed, tt.wantFail)
			}
			if msg := r.skipped + r.failed; msg != "" && !strings.Contains(msg, "CI") && !strings.Contains(msg, "skipped") {
				t.Errorf("message %q says neither why nor what CI would do", msg)
			}
		})
	}
}
