package agent

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
)

// fileStore holds the secrets and configs the dispatcher sent, in memory
// only, for as long as a task this node should run references them.
type fileStore struct {
	mu      sync.Mutex
	secrets map[string]*api.Secret
	configs map[string]*api.Config
}

func newFileStore() *fileStore {
	return &fileStore{secrets: map[string]*api.Secret{}, configs: map[string]*api.Config{}}
}

// update takes what an answer brought and drops what no task of tasks
// that should run references any more.
func (s *fileStore) update(got api.Assignments, tasks []*api.Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range got.Secrets {
		s.secrets[sec.ID] = sec
	}
	for _, c := range got.Configs {
		s.configs[c.ID] = c
	}
	keepS, keepC := map[string]bool{}, map[string]bool{}
	for _, t := range tasks {
		if t.DesiredState != api.TaskRunning || t.Status.State.Terminal() {
			continue
		}
		for _, r := range t.Spec.Secrets {
			keepS[r.ID] = true
		}
		for _, r := range t.Spec.Configs {
			keepC[r.ID] = true
		}
	}
	for id := range s.secrets {
		if !keepS[id] {
			delete(s.secrets, id)
		}
	}
	for id := range s.configs {
		if !keepC[id] {
			delete(s.configs, id)
		}
	}
}

// held reports how many secrets and configs are held now.
func (s *fileStore) held() (secrets, configs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.secrets), len(s.configs)
}

// files resolves t's references to the data held.
func (s *fileStore) files(t *api.Task) ([]exec.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []exec.File
	add := func(kind, name, path, uid, gid string, mode uint32, data []byte, ok bool) error {
		if !ok {
			return fmt.Errorf("%s %s: not received from the managers", kind, name)
		}
		u, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return fmt.Errorf("%s %s: uid %q: %w", kind, name, uid, err)
		}
		g, err := strconv.ParseUint(gid, 10, 32)
		if err != nil {
			return fmt.Errorf("%s %s: gid %q: %w", kind, name, gid, err)
		}
		out = append(out, exec.File{Kind: kind, Name: name, Path: path, Data: data, UID: uint32(u), GID: uint32(g), Mode: os.FileMode(mode & 0o777)})
		return nil
	}
	for _, r := range t.Spec.Secrets {
		sec, ok := s.secrets[r.ID]
		var data []byte
		if ok {
			data = sec.Spec.Data
		}
		if err := add("secret", r.Name, r.Path(), r.UID, r.GID, r.Mode, data, ok); err != nil {
			return nil, err
		}
	}
	for _, r := range t.Spec.Configs {
		c, ok := s.configs[r.ID]
		var data []byte
		if ok {
			data = c.Spec.Data
		}
		if err := add("config", r.Name, r.Path(), r.UID, r.GID, r.Mode, data, ok); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TaskFiles returns the secrets and configs t gets as files, from memory.
func (a *Agent) TaskFiles(t *api.Task) ([]exec.File, error) { return a.files.files(t) }
