package main

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// testingImporters may link the testing package into the binary: they are
// libraries we cannot change, not our test code leaking in.
var testingImporters = map[string]string{
	// raft's testing.go (MakeCluster and friends) is a non-test file.
	"github.com/hashicorp/raft": "testing.go is part of the package",
}

// TestBinaryImports guards the binary: no package whose path holds "fake",
// and no testing package imported by anything but the known libraries above.
func TestBinaryImports(t *testing.T) {
	goTool := testenv.Command(t, "go")
	out, err := exec.Command(goTool, "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, ".").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	imports := make(map[string][]string)
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			imports[f[0]] = f[1:]
		}
	}
	if _, ok := imports["github.com/spf13/cobra"]; !ok {
		t.Fatalf("go list -deps does not list cobra, so it did not list shoal: %s", out)
	}
	for _, msg := range badImports(imports) {
		t.Error(msg)
	}
}

// badImports checks a package -> imports map of the binary.
func badImports(imports map[string][]string) []string {
	isTesting := func(p string) bool { return p == "testing" || strings.HasPrefix(p, "testing/") }
	var bad []string
	for p, imps := range imports {
		if strings.Contains(strings.ToLower(p), "fake") {
			bad = append(bad, "the shoal binary links "+p)
		}
		if isTesting(p) {
			continue
		}
		if i := slices.IndexFunc(imps, isTesting); i >= 0 {
			if _, ok := testingImporters[p]; !ok {
				bad = append(bad, "the shoal binary links "+imps[i]+" through "+p)
			}
		}
	}
	slices.Sort(bad)
	return bad
}

func TestBadImports(t *testing.T) {
	got := badImports(map[string][]string{
		"github.com/shoal-dev/shoal/cmd/shoal":           {"github.com/shoal-dev/shoal/agent/exec/fakeexec", "github.com/hashicorp/raft"},
		"github.com/shoal-dev/shoal/agent/exec/fakeexec": {"fmt"},
		"github.com/hashicorp/raft":                      {"testing"},
		"github.com/shoal-dev/shoal/store":               {"testing/synctest"},
		"testing":                                        {"flag"},
	})
	want := []string{
		"the shoal binary links github.com/shoal-dev/shoal/agent/exec/fakeexec",
		"the shoal binary links testing/synctest through github.com/shoal-dev/shoal/store",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
