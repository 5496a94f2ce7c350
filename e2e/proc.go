package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// stopTimeout bounds a graceful stop before Stop resorts to SIGKILL.
const stopTimeout = 20 * time.Second

// Proc is a shoal process running in a host's namespace, its output going
// to LogPath.
type Proc struct {
	Host    *Host
	Args    []string
	LogPath string
	Started time.Time

	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

func startProc(h *Host, logPath, bin string, args []string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	argv := []string{"netns", "exec", h.NS}
	if h.MountNS != "" {
		argv = append(argv, "nsenter", "--mount="+h.MountNS, "--")
	}
	cmd := exec.Command("ip", append(append(argv, bin), args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	// Setpgid keeps a terminal's ^C away from the daemons (the cleanup
	// stops them); Pdeathsig kills them if the test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %v: %w", args, err)
	}
	p := &Proc{Host: h, Args: args, LogPath: logPath, Started: time.Now(), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (ip netns exec execs shoal, so it is shoal's).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited says whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to end. It returns false if it
// is still running, else true and its exit error (nil for status 0).
func (p *Proc) Wait(timeout time.Duration) (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(timeout):
		return false, nil
	}
}

// ExitCode is the exit status, or -1 while running or if killed by a signal.
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to stopTimeout, then kills. It returns an
// error if the process had to be killed or exited with a failure status.
func (p *Proc) Stop() error {
	if p.Exited() {
		return p.exitErr()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if ok, _ := p.Wait(stopTimeout); !ok {
		p.Kill()
		return fmt.Errorf("%s: still running %s after SIGTERM, killed", p.Host.Name, stopTimeout)
	}
	return p.exitErr()
}

func (p *Proc) exitErr() error {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) && ee.ExitCode() == -1 {
		return nil // ended by a signal we sent
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w", p.Host.Name, p.err)
	}
	return nil
}

// Log returns everything the process has written so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func (p *Proc) state() string {
	if !p.Exited() {
		return "running"
	}
	return p.cmd.ProcessState.String()
}
