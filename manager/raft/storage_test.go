package raft

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stoppedNode runs a single-node cluster, applies entries and a snapshot,
// and stops it, leaving its data dir for a test to damage.
func stoppedNode(t *testing.T) (Config, uint64) {
	t.Helper()
	n := startNode(t, "solo", nil, testLogger(t))
	if err := n.Bootstrap(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitLeader(t, n)
	for _, s := range []string{"a", "b"} {
		if _, err := n.Apply(ctxTimeout(t, 5*time.Second), []byte(s)); err != nil {
			t.Fatalf("apply %s: %v", s, err)
		}
	}
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if _, err := n.Apply(ctxTimeout(t, 5*time.Second), []byte("c")); err != nil {
		t.Fatalf("apply c: %v", err)
	}
	last := n.raft.LastIndex()
	if err := n.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	return n.cfg, last
}

func TestStorageErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		damage   func(t *testing.T, cfg Config, last uint64)
		wantPath func(cfg Config) string
		wantIdx  bool
	}{
		{
			name: "damaged log entry",
			damage: func(t *testing.T, cfg Config, last uint64) {
				damageWALEntry(t, filepath.Join(cfg.DataDir, walDir), last-1)
			},
			wantPath: func(cfg Config) string { return filepath.Join(cfg.DataDir, walDir, "00000000000000000001-") },
			wantIdx:  true,
		},
		{
			name: "damaged log metadata",
			damage: func(t *testing.T, cfg Config, _ uint64) {
				if err := os.WriteFile(filepath.Join(cfg.DataDir, walDir, "wal-meta.db"), []byte(strings.Repeat("x", 8192)), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantPath: func(cfg Config) string { return filepath.Join(cfg.DataDir, walDir) },
		},
		{
			name: "damaged snapshot",
			damage: func(t *testing.T, cfg Config, _ uint64) {
				states, _ := filepath.Glob(filepath.Join(cfg.DataDir, "snapshots", "*", "state.bin"))
				if len(states) != 1 {
					t.Fatalf("got snapshot files %v, want one", states)
				}
				if err := os.WriteFile(states[0], []byte("not the state that was written"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantPath: func(cfg Config) string { return filepath.Join(cfg.DataDir, "snapshots") },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, last := stoppedNode(t)
			tc.damage(t, cfg, last)
			cfg.FSM = &testFSM{}
			r, err := Open(cfg)
			if err == nil {
				r.Shutdown()
				t.Fatal("got nil error opening damaged state, want a StorageError")
			}
			var se *StorageError
			if !errors.As(err, &se) {
				t.Fatalf("got %T %v, want a *StorageError", err, err)
			}
			if !strings.HasPrefix(se.Path, tc.wantPath(cfg)) {
				t.Errorf("got path %q, want it under %q", se.Path, tc.wantPath(cfg))
			}
			if tc.wantIdx && se.Index != last-1 {
				t.Errorf("got entry %d, want %d", se.Index, last-1)
			}
			msg := err.Error()
			for _, want := range []string{se.Path, "Recovering a manager", "shoal node rm --force"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not hold %q", msg, want)
				}
			}
			if se.ExitCode() != ExitStorage {
				t.Errorf("got exit code %d, want %d", se.ExitCode(), ExitStorage)
			}
		})
	}
}

func TestSegmentOf(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"00000000000000000001-0000000000000001.wal", "00000000000000000100-0000000000000002.wal", "wal-meta.db"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	of := segmentOf(dir)
	for _, tc := range []struct {
		index uint64
		want  string
	}{
		{0, dir},
		{1, "00000000000000000001-0000000000000001.wal"},
		{99, "00000000000000000001-0000000000000001.wal"},
		{100, "00000000000000000100-0000000000000002.wal"},
		{5000, "00000000000000000100-0000000000000002.wal"},
	} {
		want := tc.want
		if want != dir {
			want = filepath.Join(dir, want)
		}
		if got := of(tc.index); got != want {
			t.Errorf("segment of %d: got %s, want %s", tc.index, got, want)
		}
	}
}

// damageWALEntry overwrites the payload of entry index in the first raft-wal
// segment of dir with 0xff, keeping the frames intact. The entry must not be
// in the last write batch, whose checksum raft-wal checks (and drops).
func damageWALEntry(t *testing.T, dir string, index uint64) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) == 0 {
		t.Fatalf("no segment in %s", dir)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	const fileHeader, frameHeader = 32, 8
	k := uint64(1) // the first segment's base index
	for off := fileHeader; off+frameHeader <= len(data); {
		typ, n := data[off], int(binary.LittleEndian.Uint32(data[off+4:off+8]))
		switch typ {
		case 1: // entry
			if k == index {
				for i := off + frameHeader; i < off+frameHeader+n; i++ {
					data[i] = 0xff
				}
				if err := os.WriteFile(segs[0], data, 0o600); err != nil {
					t.Fatal(err)
				}
				return
			}
			k++
		case 2: // index
		case 3: // commit: no payload
			off += frameHeader
			continue
		default:
			t.Fatalf("entry %d not found in %s", index, segs[0])
		}
		off += frameHeader + n + (8-n%8)%8
	}
	t.Fatalf("entry %d not found in %s", index, segs[0])
}
