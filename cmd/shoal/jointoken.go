package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// tokenEnv names the environment variable shoal join reads the token from.
const tokenEnv = "SHOAL_TOKEN"

// maxTokenFile bounds what --token-file reads: a token is ~85 bytes.
const maxTokenFile = 4096

// joinToken finds the token of shoal join: --token, --token-file PATH (- for
// stdin) or $SHOAL_TOKEN, exactly one of them. inArgv says the token is in
// the command line or the environment, where /proc shows it to anyone on
// the machine for as long as the process runs.
func (a *app) joinToken(f *daemonFlags) (token string, inArgv bool, err error) {
	switch {
	case f.token != "" && f.tokenFile != "":
		return "", false, errors.New("--token and --token-file: give one of them")
	case f.token != "":
		return f.token, true, nil
	case f.tokenFile != "":
		token, err := a.readTokenFile(f.tokenFile)
		return token, false, err
	case a.getenv(tokenEnv) != "":
		return strings.TrimSpace(a.getenv(tokenEnv)), true, nil
	}
	return "", false, errors.New("a join token is required: --token-file PATH (- for stdin), $" + tokenEnv +
		" or --token; get one with shoal join-token worker (or manager) on a manager")
}

func (a *app) readTokenFile(path string) (string, error) {
	var r io.Reader = a.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		defer f.Close()
		// A descriptor handed over by reexecWithoutToken must not reach
		// the processes this one starts.
		if fd, ok := strings.CutPrefix(path, "/dev/fd/"); ok {
			if n, err := strconv.Atoi(fd); err == nil {
				syscall.CloseOnExec(n)
			}
		}
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("--token-file %s: larger than %d bytes, not a join token", path, maxTokenFile)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("--token-file %s: empty", path)
	}
	return token, nil
}

// reexecWithoutToken replaces the process by itself, same PID, with the
// token out of its command line and environment: it passes through a pipe
// instead, read as --token-file /dev/fd/N. It returns only on failure.
func reexecWithoutToken(token string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("token pipe: %w", err)
	}
	defer r.Close()
	// The pipe buffer holds far more than a token, so this write does not block.
	if _, err := io.WriteString(w, token); err != nil {
		w.Close()
		return fmt.Errorf("token pipe: %w", err)
	}
	w.Close()
	fd, err := syscall.Dup(int(r.Fd())) // a dup is not close-on-exec
	if err != nil {
		return fmt.Errorf("token pipe: %w", err)
	}
	args := append([]string{os.Args[0]}, withoutToken(os.Args[1:], "/dev/fd/"+strconv.Itoa(fd))...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, tokenEnv+"=") {
			env = append(env, kv)
		}
	}
	err = syscall.Exec(exe, args, env)
	syscall.Close(fd)
	return fmt.Errorf("re-execute without the token in the command line: %w", err)
}

// withoutToken replaces --token VALUE and --token=VALUE in args by
// --token-file file.
func withoutToken(args []string, file string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--":
			return append(append(out, "--token-file", file), args[i:]...)
		case a == "--token":
			i++
		case strings.HasPrefix(a, "--token="):
		default:
			out = append(out, a)
		}
	}
	return append(out, "--token-file", file)
}
