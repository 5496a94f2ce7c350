package volume

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/shoal-dev/shoal/api"
)

// Errors Remove returns, checked with errors.Is.
var (
	ErrNotFound = errors.New("no such volume on this node")
	ErrInUse    = errors.New("volume is in use")
)

// Store keeps the volumes of one node under Dir: Dir/NAME/_data is what a
// task mounts (docker's layout). Safe for concurrent use.
type Store struct {
	dir string
	mu  sync.Mutex
	// busy counts the tasks being prepared with each volume: their
	// containers do not exist yet, so only this keeps Remove off them.
	busy map[string]int
}

// New returns the store of the volumes under dir, made if missing.
func New(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	return &Store{dir: dir, busy: map[string]int{}}, nil
}

// Path is where volume name's content lives.
func (s *Store) Path(name string) string { return filepath.Join(s.dir, name, "_data") }

// Acquire makes volume name if it does not exist and returns its
// directory. If fill is set and the directory is empty (a new volume),
// fill is called to populate it first (docker copies the image's content
// at the mount target). The volume cannot be removed until release is
// called: call it once the task's container exists (it then holds the
// volume) or its preparation failed.
func (s *Store) Acquire(name string, fill func(dir string) error) (dir string, release func(), err error) {
	if err := api.ValidVolumeName(name); err != nil {
		return "", nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir = s.Path(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("volume %s: %w", name, err)
	}
	if fill != nil {
		empty, err := isEmpty(dir)
		if err != nil {
			return "", nil, fmt.Errorf("volume %s: %w", name, err)
		}
		if empty {
			if err := fill(dir); err != nil {
				return "", nil, fmt.Errorf("volume %s: copy the image's content: %w", name, err)
			}
		}
	}
	s.busy[name]++
	var once sync.Once
	return dir, func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.busy[name]--; s.busy[name] <= 0 {
				delete(s.busy, name)
			}
		})
	}, nil
}

func isEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// List returns the node's volumes by name, each with its mountpoint.
func (s *Store) List() ([]api.Volume, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []api.Volume
	for _, e := range entries {
		if !e.IsDir() || api.ValidVolumeName(e.Name()) != nil || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		out = append(out, api.Volume{Name: e.Name(), Mountpoint: s.Path(e.Name())})
	}
	slices.SortFunc(out, func(a, b api.Volume) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Remove deletes volume name and its content. usedBy names the tasks whose
// containers on this node mount the volume (and have not exited); it is
// asked under the store's lock, so no task acquires the volume meanwhile.
// A volume in use, or being mounted by a task being prepared, is kept and
// the error (ErrInUse) names the tasks.
func (s *Store) Remove(name string, usedBy func(name string) ([]string, error)) error {
	if err := api.ValidVolumeName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	top := filepath.Join(s.dir, name)
	if _, err := os.Stat(top); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("volume %s: %w", name, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if n := s.busy[name]; n > 0 {
		return fmt.Errorf("volume %s: %w by %d task(s) being started", name, ErrInUse, n)
	}
	tasks, err := usedBy(name)
	if err != nil {
		return fmt.Errorf("volume %s: find the tasks using it: %w", name, err)
	}
	if len(tasks) > 0 {
		return fmt.Errorf("volume %s: %w by task(s) %s", name, ErrInUse, strings.Join(tasks, ", "))
	}
	// Rename first, so a failed removal leaves no half-empty volume under
	// its name for the next task.
	trash := filepath.Join(s.dir, ".rm-"+name)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if err := os.Rename(top, trash); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("volume %s: removed, but deleting its content failed: %w", name, err)
	}
	return nil
}
