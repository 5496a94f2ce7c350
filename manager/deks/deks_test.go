package deks

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestKeyFile(t *testing.T) {
	k := KeyFile{Path: filepath.Join(t.TempDir(), "keys", "raft-dek.json")}
	if dek, err := k.Load(""); dek != nil || err != nil || k.Exists() {
		t.Fatalf("missing file: %v, %v", dek, err)
	}
	dek := NewDEK()
	if err := k.Save(dek, ""); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(k.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if got, err := k.Load(""); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("plain: %v, %v", got, err)
	}
	if locked, _ := k.Locked(); locked {
		t.Error("plain file reads as locked")
	}

	key := NewUnlockKey()
	if err := k.Save(dek, key); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(k.Path); bytes.Contains(b, dek) {
		t.Error("wrapped file holds the DEK")
	}
	if locked, _ := k.Locked(); !locked {
		t.Error("wrapped file does not read as locked")
	}
	if _, err := k.Load(""); !errors.Is(err, ErrLocked) {
		t.Errorf("no key: %v, want ErrLocked", err)
	}
	if _, err := k.Load(NewUnlockKey()); !errors.Is(err, ErrWrongKey) {
		t.Errorf("wrong key: %v, want ErrWrongKey", err)
	}
	if _, err := k.Load("SWMKEY-1-abc"); err == nil || errors.Is(err, ErrWrongKey) {
		t.Errorf("malformed key: %v, want a form error", err)
	}
	if got, err := k.Load(key + "\n"); err != nil || !bytes.Equal(got, dek) {
		t.Errorf("right key: %v, %v", got, err)
	}
}
