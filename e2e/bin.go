package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// builtBin is one program under test, found or built once per test process.
type builtBin struct {
	once sync.Once
	path string
	err  string
}

var (
	shoalProg, simProg builtBin
	binDirOnce         sync.Once
	binDir             string
	binDirErr          string
)

// shoalBin returns the shoal binary under test: $SHOAL_BIN if set, else one
// built from this module once per test process.
func shoalBin(t testing.TB) string {
	t.Helper()
	return program(t, &shoalProg, "SHOAL_BIN", "shoal")
}

// simBin returns the hollow-node simulator: $SHOAL_SIM_BIN if set, else one
// built from this module once per test process.
func simBin(t testing.TB) string {
	t.Helper()
	return program(t, &simProg, "SHOAL_SIM_BIN", "shoal-sim")
}

func program(t testing.TB, b *builtBin, env, name string) string {
	t.Helper()
	b.once.Do(func() {
		if p := os.Getenv(env); p != "" {
			abs, err := filepath.Abs(p)
			if err != nil {
				b.err = err.Error()
				return
			}
			if _, err := os.Stat(abs); err != nil {
				b.err = env + ": " + err.Error()
				return
			}
			b.path = abs
			return
		}
		dir, err := buildDir()
		if err != nil {
			b.err = err.Error()
			return
		}
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
		cmd.Dir = ".." // the module root; go test runs in the package directory
		if o, err := cmd.CombinedOutput(); err != nil {
			b.err = "go build ./cmd/" + name + ": " + err.Error() + "\n" + string(o)
			return
		}
		b.path = out
	})
	if b.err != "" {
		t.Fatalf("%s binary: %s", name, b.err)
	}
	return b.path
}

// buildDir is where built binaries go: under stateDir with an owner file,
// so a later run removes it if this process dies before TestMain cleans up.
func buildDir() (string, error) {
	binDirOnce.Do(func() {
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			binDirErr = err.Error()
			return
		}
		dir, err := os.MkdirTemp(stateDir, "bin-")
		if err != nil {
			binDirErr = err.Error()
			return
		}
		binDir = dir
		if err := writeOwner(filepath.Join(dir, "owner")); err != nil {
			binDirErr = err.Error()
		}
	})
	if binDirErr != "" {
		return "", errors.New("e2e: binary directory: " + binDirErr)
	}
	return binDir, nil
}

// removeBin deletes the binaries built here; TestMain calls it.
func removeBin() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}
