package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/continuity/fs"
	"github.com/opencontainers/image-spec/identity"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
)

// host makes ready what a task's container needs from the node: its
// network, its named volumes (made and filled on first use), its hosts and
// resolv.conf files. release lets the volumes be removed again; call it
// once the container exists or the preparation failed.
func (e *Executor) host(ctx context.Context, t *api.Task, img containerd.Image) (taskHost, func(), error) {
	h := taskHost{InitPath: e.initPath, Volumes: map[string]string{}}
	var releases []func()
	release := func() {
		for _, r := range releases {
			r()
		}
	}
	for _, m := range t.Spec.Mounts {
		if m.Type != api.MountVolume {
			continue
		}
		if e.volumes == nil {
			return h, release, fmt.Errorf("mount %s: this node keeps no volumes", m.Target)
		}
		if _, ok := h.Volumes[m.Source]; ok {
			continue
		}
		var fill func(string) error
		if !m.VolumeNoCopy {
			target := m.Target
			fill = func(dir string) error { return e.copyImagePath(ctx, img, target, dir) }
		}
		dir, rel, err := e.volumes.Acquire(m.Source, fill)
		if err != nil {
			return h, release, fmt.Errorf("mount %s: %w", m.Target, err)
		}
		releases = append(releases, rel)
		h.Volumes[m.Source] = dir
	}
	if e.network != nil {
		var err error
		if h.NetnsPath, h.ResolvConf, err = e.network(t); err != nil {
			return h, release, fmt.Errorf("network: %w", err)
		}
	}
	if d := t.Spec.DNS; d != nil && h.ResolvConf == "" && len(d.Nameservers)+len(d.Search)+len(d.Options) > 0 {
		p := filepath.Join(e.etcDir, t.ID+".resolv.conf")
		if err := os.WriteFile(p, []byte(resolvConf(d)), 0o644); err != nil {
			return h, release, fmt.Errorf("resolv.conf: %w", err)
		}
		h.ResolvConf = p
	}
	if len(t.Spec.Hosts) > 0 {
		text, err := hostsFile(t.Spec.Hosts)
		if err != nil {
			return h, release, err
		}
		p := filepath.Join(e.etcDir, t.ID+".hosts")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return h, release, fmt.Errorf("hosts file: %w", err)
		}
		h.HostsFile = p
	}
	return h, release, nil
}

// removeEtc deletes the hosts and resolv.conf files made for a task.
func (e *Executor) removeEtc(taskID string) {
	for _, suffix := range []string{".hosts", ".resolv.conf"} {
		if err := os.Remove(filepath.Join(e.etcDir, taskID+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			e.log.Warn("remove task file", "task", taskID, "err", err)
		}
	}
}

// copyImagePath copies what img holds at target (a directory) into dir, as
// docker fills a new volume: through a read-only view of the image's
// layers, mounted for the copy and removed after it. Nothing at target,
// or a file there, copies nothing.
func (e *Executor) copyImagePath(ctx context.Context, img containerd.Image, target, dir string) error {
	// A lease keeps containerd's garbage collector off the view meanwhile.
	ctx, done, err := e.client.WithLease(ctx)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	defer func() {
		if err := done(context.WithoutCancel(ctx)); err != nil {
			e.log.Warn("release lease", "err", err)
		}
	}()
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return fmt.Errorf("image layers: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	key := "shoal-volume-copy-" + hex.EncodeToString(b[:])
	sn := e.client.SnapshotService(e.snapshotter)
	mounts, err := sn.View(ctx, key, identity.ChainID(diffIDs).String())
	if err != nil {
		return fmt.Errorf("view image: %w", err)
	}
	defer func() {
		if err := sn.Remove(context.WithoutCancel(ctx), key); err != nil {
			e.log.Warn("remove image view", "key", key, "err", err)
		}
	}()
	return mount.WithReadonlyTempMount(ctx, mounts, func(root string) error {
		src, err := fs.RootPath(root, target)
		if err != nil {
			return err
		}
		st, err := os.Stat(src)
		if errors.Is(err, os.ErrNotExist) || (err == nil && !st.IsDir()) {
			return nil
		}
		if err != nil {
			return err
		}
		return fs.CopyDir(dir, src)
	})
}

// volumeNames are the named volumes among mounts, sorted, each once.
func volumeNames(mounts []api.Mount) []string {
	var names []string
	for _, m := range mounts {
		if m.Type == api.MountVolume && !slices.Contains(names, m.Source) {
			names = append(names, m.Source)
		}
	}
	slices.Sort(names)
	return names
}

// VolumeUsers returns the IDs of the tasks whose containers mount volume
// name and have not exited: what keeps a volume from removal.
func (e *Executor) VolumeUsers(ctx context.Context, name string) ([]string, error) {
	list, err := e.List(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, c := range list {
		if c.State != exec.StateExited && slices.Contains(c.Volumes, name) {
			ids = append(ids, c.TaskID)
		}
	}
	return ids, nil
}
