package testimage

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// RegistryBinary is the registry server of Debian's docker-registry package.
const RegistryBinary = "docker-registry"

// Registry is a docker-registry process serving plain HTTP, for tests.
type Registry struct {
	// Addr is host:port, the domain part of image references it serves.
	Addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // of cmd.Wait, set before exited closes
}

// StartRegistry runs docker-registry on addr ("127.0.0.1:5000") storing in
// dir, and returns once it answers GET /v2/ or fails when ctx ends first.
// Its output goes to dir/registry.log.
func StartRegistry(ctx context.Context, dir, addr string) (*Registry, error) {
	bin, err := exec.LookPath(RegistryBinary)
	if err != nil {
		return nil, fmt.Errorf("testimage: registry: %w", err)
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("testimage: registry: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, fmt.Errorf("testimage: registry: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testimage: registry: %w", err)
	}
	r := &Registry{Addr: addr, cmd: cmd, exited: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.exited)
	}()

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("testimage: registry: %w", err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-r.exited:
			return nil, fmt.Errorf("testimage: registry exited: %v (see %s)", r.err, logf.Name())
		case <-ctx.Done():
			r.Close()
			return nil, fmt.Errorf("testimage: registry on %s: %w", addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// Close kills the registry and waits for it to exit.
func (r *Registry) Close() error {
	_ = r.cmd.Process.Kill()
	<-r.exited
	return nil
}
