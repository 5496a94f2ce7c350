package volume_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/agent/volume"
)

func TestStore(t *testing.T) {
	s, err := volume.New(filepath.Join(t.TempDir(), "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	fills := 0
	fill := func(dir string) error {
		fills++
		return os.WriteFile(filepath.Join(dir, "seed"), []byte("x"), 0o644)
	}
	dir, release, err := s.Acquire("data", fill)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "seed")); err != nil || fills != 1 {
		t.Fatalf("new volume not filled: %v, %d fills", err, fills)
	}
	// Not empty any more: a second task does not fill it again.
	_, release2, err := s.Acquire("data", fill)
	if err != nil || fills != 1 {
		t.Fatalf("second acquire: %v, %d fills", err, fills)
	}
	none := func(string) ([]string, error) { return nil, nil }
	if err := s.Remove("data", none); !errors.Is(err, volume.ErrInUse) {
		t.Fatalf("remove while being prepared: %v, want ErrInUse", err)
	}
	release()
	release() // idempotent
	release2()
	if err := s.Remove("data", func(string) ([]string, error) { return []string{"task1"}, nil }); !errors.Is(err, volume.ErrInUse) || !strings.Contains(err.Error(), "task1") {
		t.Fatalf("remove while a task uses it: %v", err)
	}
	vols, err := s.List()
	if err != nil || len(vols) != 1 || vols[0].Name != "data" || vols[0].Mountpoint != dir {
		t.Fatalf("List: %+v, %v", vols, err)
	}
	if err := s.Remove("data", none); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("data", none); !errors.Is(err, volume.ErrNotFound) {
		t.Fatalf("remove twice: %v, want ErrNotFound", err)
	}
	if vols, _ := s.List(); len(vols) != 0 {
		t.Fatalf("List after remove: %+v", vols)
	}
	if _, _, err := s.Acquire("../x", nil); err == nil {
		t.Fatal("acquire of a bad name succeeded")
	}
	// A fill that fails leaves no hold on the volume.
	if _, _, err := s.Acquire("bad", func(string) error { return errors.New("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("failed fill: %v", err)
	}
	if err := s.Remove("bad", none); err != nil {
		t.Fatalf("remove after a failed fill: %v", err)
	}
}
