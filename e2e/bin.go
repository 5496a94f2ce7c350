package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binDir  string
	binErr  string
)

// shoalBin returns the shoal binary under test: $SHOAL_BIN if set, else one
// built from this module once per test process.
func shoalBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("SHOAL_BIN"); p != "" {
			abs, err := filepath.Abs(p)
			if err != nil {
				binErr = err.Error()
				return
			}
			if _, err := os.Stat(abs); err != nil {
				binErr = "SHOAL_BIN: " + err.Error()
				return
			}
			binPath = abs
			return
		}
		// The binary lives under stateDir with an owner file, so a later
		// run removes it if this process dies before TestMain cleans up.
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			binErr = err.Error()
			return
		}
		dir, err := os.MkdirTemp(stateDir, "bin-")
		if err != nil {
			binErr = err.Error()
			return
		}
		binDir = dir
		if err := writeOwner(filepath.Join(dir, "owner")); err != nil {
			binErr = err.Error()
			return
		}
		out := filepath.Join(dir, "shoal")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/shoal")
		cmd.Dir = ".." // the module root; go test runs in the package directory
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = "go build ./cmd/shoal: " + err.Error() + "\n" + string(b)
			return
		}
		binPath = out
	})
	if binErr != "" {
		t.Fatalf("shoal binary: %s", binErr)
	}
	return binPath
}

// removeBin deletes a binary built by shoalBin; TestMain calls it.
func removeBin() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}
