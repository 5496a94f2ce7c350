package containerd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/api"
)

// A task's secrets and configs live in a tmpfs of its own, mounted at
// StateDir/files/TASK for the task's life (memory, never disk: the kernel
// drops it at unmount), one file per reference, each bind-mounted read-only
// at its path in the container. Configs go there too: one mechanism, and a
// config's data stays off the worker's disk as well.

// filesDir is the directory of t's tmpfs.
func (e *Executor) filesDir(taskID string) string {
	return filepath.Join(e.stateDir, "files", taskID)
}

// prepareFiles writes t's files into a fresh tmpfs and returns their mounts;
// none when t has no secret or config.
func (e *Executor) prepareFiles(t *api.Task) ([]specs.Mount, error) {
	if e.files == nil || (len(t.Spec.Secrets) == 0 && len(t.Spec.Configs) == 0) {
		return nil, nil
	}
	files, err := e.files(t)
	if err != nil {
		return nil, err
	}
	dir := e.filesDir(t.ID)
	e.releaseFiles(t.ID) // a tmpfs left by an earlier attempt
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	size := 1 << 20
	for _, f := range files {
		size += len(f.Data) + 4096
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
		"mode=0700,size="+strconv.Itoa(size)); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("files: mount tmpfs on %s: %w", dir, err)
	}
	mounts := make([]specs.Mount, 0, len(files))
	for i, f := range files {
		src := filepath.Join(dir, strconv.Itoa(i))
		if err := writeFile(src, f.Data, f.UID, f.GID, f.Mode); err != nil {
			e.releaseFiles(t.ID)
			return nil, fmt.Errorf("files: %s %s: %w", f.Kind, f.Name, err)
		}
		mounts = append(mounts, specs.Mount{Destination: f.Path, Type: "bind", Source: src, Options: []string{"rbind", "ro"}})
	}
	return mounts, nil
}

func writeFile(path string, data []byte, uid, gid uint32, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chown(int(uid), int(gid)); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// releaseFiles unmounts a task's tmpfs (its data goes with it) and removes
// the directory; a task without one is a no-op.
func (e *Executor) releaseFiles(taskID string) {
	dir := e.filesDir(taskID)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		e.log.Warn("unmount task files", "task", taskID, "err", err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("remove task files", "task", taskID, "err", err)
	}
}
