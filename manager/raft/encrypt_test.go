package raft

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

func newDEK(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, DEKSize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealedLogs(t *testing.T) {
	aead, err := newAEAD(newDEK(t))
	if err != nil {
		t.Fatal(err)
	}
	mem := hraft.NewInmemStore()
	s := &sealedLogs{LogStore: mem, aead: aead}
	plain := []byte(`{"ops":[{"object":"topsecret"}]}`)
	if err := s.StoreLogs([]*hraft.Log{{Index: 1, Data: plain}, {Index: 2, Data: plain}, {Index: 3}}); err != nil {
		t.Fatal(err)
	}
	var raw hraft.Log
	if err := mem.GetLog(1, &raw); err != nil || bytes.Contains(raw.Data, []byte("topsecret")) || !bytes.HasPrefix(raw.Data, entryMagic) {
		t.Fatalf("stored entry %q (%v): want it sealed", raw.Data, err)
	}
	var got hraft.Log
	if err := s.GetLog(1, &got); err != nil || !bytes.Equal(got.Data, plain) {
		t.Fatalf("GetLog: %q, %v", got.Data, err)
	}
	// An entry moved to another index does not open.
	moved := raw
	moved.Index = 2
	if err := mem.StoreLog(&moved); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(2, &got); !errors.Is(err, ErrDecrypt) {
		t.Errorf("moved entry: got %v, want ErrDecrypt", err)
	}
	// Another key does not open it.
	other, _ := newAEAD(newDEK(t))
	if err := (&sealedLogs{LogStore: mem, aead: other}).GetLog(1, &got); !errors.Is(err, ErrDecrypt) {
		t.Errorf("other key: got %v, want ErrDecrypt", err)
	}
	// An entry written before encryption reads as it is.
	if err := mem.StoreLog(&hraft.Log{Index: 4, Data: []byte(`{"old":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(4, &got); err != nil || string(got.Data) != `{"old":1}` {
		t.Errorf("plain entry: %q, %v", got.Data, err)
	}
}

func TestSealedSnapshots(t *testing.T) {
	aead, err := newAEAD(newDEK(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fs, err := hraft.NewFileSnapshotStoreWithLogger(dir, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &sealedSnapshots{SnapshotStore: fs, aead: aead}
	for i, size := range []int{0, 1, snapChunk - 1, snapChunk, snapChunk + 1, 3 * snapChunk, 3*snapChunk + 7} {
		plain := bytes.Repeat([]byte("topsecret"), size/9+1)[:size]
		sink, err := s.Create(hraft.SnapshotVersionMax, uint64(i+1), 1, hraft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Odd write sizes cross chunk boundaries.
		for rest := plain; len(rest) > 0; {
			n := min(len(rest), 1000+i*7919)
			if _, err := sink.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		onDisk, _ := os.ReadFile(filepath.Join(dir, "snapshots", sink.ID(), "state.bin"))
		if size > 0 && bytes.Contains(onDisk, []byte("topsecret")) {
			t.Errorf("size %d: state.bin holds the plain text", size)
		}
		meta, rc, err := s.Open(sink.ID())
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, plain) || meta.Size != int64(size) {
			t.Errorf("size %d: read %d bytes (%v), meta size %d", size, len(got), err, meta.Size)
		}
		// Cut off at a chunk boundary or inside one: an error, never a short read.
		if size > snapChunk {
			path := filepath.Join(dir, "snapshots", sink.ID(), "state.bin")
			for _, cut := range []int{len(snapMagic) + snapChunk + aead.NonceSize() + aead.Overhead(), len(onDisk) - 1} {
				if err := os.WriteFile(path, onDisk[:cut], 0o600); err != nil {
					t.Fatal(err)
				}
				_, rc, err := s.SnapshotStore.Open(sink.ID())
				if err != nil {
					continue // the file store's CRC caught it first
				}
				rc.Close()
				_, rc, err = s.Open(sink.ID())
				if err == nil {
					_, err = io.ReadAll(rc)
					rc.Close()
				}
				if !errors.Is(err, ErrDecrypt) {
					t.Errorf("size %d cut at %d: got %v, want ErrDecrypt", size, cut, err)
				}
			}
		}
	}
}

// TestEncryptedRestart: a node with a DEK keeps nothing readable in its
// raft files, restarts with its key, and refuses another key.
func TestEncryptedRestart(t *testing.T) {
	dek := newDEK(t)
	n := startNode(t, "solo", nil, testLogger(t), func(c *Config) { c.DEK = dek })
	if err := n.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n)
	var want []string
	for i, s := range []string{"topsecret-a", "topsecret-b", "topsecret-c"} {
		if _, err := n.Apply(ctxTimeout(t, 5*time.Second), []byte(s)); err != nil {
			t.Fatal(err)
		}
		want = append(want, s)
		if i == 1 {
			if err := n.raft.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	_ = filepath.Walk(n.cfg.DataDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("topsecret")) {
				t.Errorf("%s holds an entry in the clear", p)
			}
		}
		return nil
	})
	n.cfg.DEK = newDEK(t)
	if r, err := Open(n.cfg); err == nil {
		r.Shutdown()
		t.Fatal("Open with another key succeeded")
	} else if !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with another key: %v, want ErrDecrypt", err)
	}
	n.cfg.DEK = dek
	n.open(t)
	waitLeader(t, n)
	if err := n.Barrier(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := n.fsm.Entries(); !slices.Equal(got, want) {
		t.Fatalf("got entries %v, want %v", got, want)
	}
}
