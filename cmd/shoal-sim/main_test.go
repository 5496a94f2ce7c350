package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(tokFile, []byte("SHOAL-FILE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--join", "10.0.0.1", "--advertise-addr", "10.0.0.9"}
	tests := []struct {
		name      string
		args      []string
		env       string
		wantToken string
		wantErr   string
	}{
		{"token flag", append(base, "--token", "SHOAL-X"), "", "SHOAL-X", ""},
		{"token file", append(base, "--token-file", tokFile), "", "SHOAL-FILE", ""},
		{"token env", base, "SHOAL-ENV", "SHOAL-ENV", ""},
		{"no token", base, "", "", "join token is required"},
		{"no join", []string{"--advertise-addr", "10.0.0.9", "--token", "T"}, "", "", "--join"},
		{"bad addr", []string{"--join", "m", "--advertise-addr", "host", "--token", "T"}, "", "", "--advertise-addr"},
		{"no nodes", append(base, "--token", "T", "--nodes", "0"), "", "", "--nodes 0"},
		{"extra args", append(base, "--token", "T", "oops"), "", "", "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parse(tt.args, io.Discard, func(string) string { return tt.env })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.token != tt.wantToken {
				t.Errorf("token: got %q, want %q", o.token, tt.wantToken)
			}
		})
	}
}

func TestSelection(t *testing.T) {
	s := newSim(options{nodes: 3, prefix: "sim"}, nil)
	s.nodes[0].state = stateRunning
	if _, err := s.pick(selection{count: 2}, stateRunning); err == nil {
		t.Errorf("count 2 of 1 running: got no error")
	}
	if got, err := s.pick(selection{refs: []string{"sim-0001"}}, stateRunning); err != nil || len(got) != 1 {
		t.Errorf("pick sim-0001: got %d nodes, %v", len(got), err)
	}
	if _, err := s.pick(selection{refs: []string{"sim-0002"}}, stateRunning); err == nil {
		t.Errorf("pick a joining node as running: got no error")
	}
	if _, err := s.pick(selection{refs: []string{"nope"}}, stateRunning); err == nil {
		t.Errorf("pick an unknown node: got no error")
	}
}
