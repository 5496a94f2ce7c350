package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sync"

	"github.com/containerd/containerd/cio"
)

// LogWriterArg, as a binary's first argument followed by a log file's path,
// makes it the log writer of a task with a terminal (RunLogWriter). The
// shoal binary is one (cmd/shoal).
const LogWriterArg = "_shoal-task-log"

// RunLogWriter is the logging binary containerd's shim starts for a task
// with a terminal: with a terminal the shim copies the console only to a
// FIFO or such a binary, not to a file. It gets the console's output on fd 3
// (and stderr, unused with a terminal, on fd 4), closes fd 5 once ready, and
// appends both to path until the task ends. It is the shim's child, so the
// log goes on while the agent is down, as a file log does.
func RunLogWriter(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("task log: %w", err)
	}
	defer f.Close()
	if err := os.NewFile(5, "ready").Close(); err != nil {
		return fmt.Errorf("task log: signal ready: %w", err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, fd := range []uintptr{3, 4} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := os.NewFile(fd, "output")
			defer src.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					mu.Lock()
					_, werr := f.Write(buf[:n])
					mu.Unlock()
					if werr != nil {
						errs[i] = werr
						return
					}
				}
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ttyIO is the IO of a task with a terminal: the console goes to the log
// writer binary, which appends it to the task's log file.
type ttyIO struct{ cfg cio.Config }

func (t *ttyIO) Config() cio.Config { return t.cfg }
func (t *ttyIO) Cancel()            {}
func (t *ttyIO) Wait()              {}
func (t *ttyIO) Close() error       { return nil }

// ttyLog returns the IO creator of a task with a terminal.
func (e *Executor) ttyLog(taskID string) (cio.Creator, error) {
	if e.logBinary == "" {
		return nil, errors.New("--tty: this agent has no log writer binary for a terminal's output")
	}
	u := url.URL{Scheme: "binary", Path: e.logBinary, RawQuery: url.Values{LogWriterArg: {e.Logs(taskID)}}.Encode()}
	return func(string) (cio.IO, error) {
		return &ttyIO{cfg: cio.Config{Stdout: u.String(), Stderr: u.String(), Terminal: true}}, nil
	}, nil
}

// taskIO is how a task's output reaches its log file: the shim writes the
// file itself, or, with a terminal, through the log writer binary.
func (e *Executor) taskIO(ctx context.Context, taskID string, terminal bool) (cio.Creator, error) {
	if terminal {
		return e.ttyLog(taskID)
	}
	return cio.LogFile(e.Logs(taskID)), nil
}
