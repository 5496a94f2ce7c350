package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestJoinTokenSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("FILE-TOK\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		env        string
		stdin      string
		wantToken  string
		wantReexec bool
		wantErr    string
	}{
		{name: "flag", args: []string{"--token", "FLAG-TOK"}, wantToken: "FLAG-TOK", wantReexec: true},
		{name: "environment", env: "ENV-TOK", wantToken: "ENV-TOK", wantReexec: true},
		{name: "file", args: []string{"--token-file", file}, wantToken: "FILE-TOK"},
		{name: "stdin", args: []string{"--token-file", "-"}, stdin: " STDIN-TOK\n", wantToken: "STDIN-TOK"},
		{name: "file beats environment", args: []string{"--token-file", file}, env: "ENV-TOK", wantToken: "FILE-TOK"},
		{name: "empty file", args: []string{"--token-file", empty}, wantErr: "empty"},
		{name: "huge stdin", args: []string{"--token-file", "-"}, stdin: strings.Repeat("x", 5000), wantErr: "larger than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": dir, tokenEnv: tt.env})
			ta.stdin = strings.NewReader(tt.stdin)
			var reexeced string
			ta.reexec = func(token string) error { reexeced = token; return nil }
			code := ta.run(append(append([]string{"join", "--advertise-addr", "10.0.0.2"}, tt.args...), "10.0.0.1")...)
			if tt.wantErr != "" {
				if code != 1 || !strings.Contains(ta.stderr.String(), tt.wantErr) {
					t.Fatalf("got exit %d, stderr %q, want 1 and %q", code, ta.stderr.String(), tt.wantErr)
				}
				return
			}
			if code != 0 || len(ta.cfgs) != 1 {
				t.Fatalf("got exit %d, %d runs (stderr %q), want 0 and one run", code, len(ta.cfgs), ta.stderr.String())
			}
			if got := ta.cfgs[0].JoinToken; got != tt.wantToken {
				t.Errorf("got token %q, want %q", got, tt.wantToken)
			}
			if (reexeced != "") != tt.wantReexec || (tt.wantReexec && reexeced != tt.wantToken) {
				t.Errorf("got re-exec with %q, want re-exec %v with %q", reexeced, tt.wantReexec, tt.wantToken)
			}
		})
	}
}

func TestJoinTokenReexecFailure(t *testing.T) {
	ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": t.TempDir()})
	ta.reexec = func(string) error { return errors.New("no exec here") }
	if code := ta.run("join", "--token", "TOK", "--advertise-addr", "10.0.0.2", "10.0.0.1"); code != 1 {
		t.Fatalf("got exit %d, want 1", code)
	}
	if len(ta.cfgs) != 0 || !strings.Contains(ta.stderr.String(), "no exec here") {
		t.Errorf("got %d runs, stderr %q: want no run and the failure", len(ta.cfgs), ta.stderr.String())
	}
}

func TestWithoutToken(t *testing.T) {
	tests := []struct {
		args, want []string
	}{
		{[]string{"join", "--token", "T", "--hostname", "h", "10.0.0.1"},
			[]string{"join", "--hostname", "h", "10.0.0.1", "--token-file", "/dev/fd/3"}},
		{[]string{"join", "--token=T", "10.0.0.1"}, []string{"join", "10.0.0.1", "--token-file", "/dev/fd/3"}},
		{[]string{"join", "10.0.0.1", "--", "--token", "x"}, []string{"join", "10.0.0.1", "--token-file", "/dev/fd/3", "--", "--token", "x"}},
		{[]string{"join", "--token-filey", "10.0.0.1"}, []string{"join", "--token-filey", "10.0.0.1", "--token-file", "/dev/fd/3"}},
	}
	for _, tt := range tests {
		if got := withoutToken(tt.args, "/dev/fd/3"); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("withoutToken(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}
