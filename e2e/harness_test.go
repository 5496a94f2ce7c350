package e2e

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	removeBin()
	os.Exit(code)
}

// TestHarness checks the harness alone: two hosts reach each other through
// the switch, a cut link stops that, processes stop, and teardown removes
// the namespaces, the processes in them and the run file.
func TestHarness(t *testing.T) {
	requireEnv(t)
	sleep := testenv.Command(t, "sleep")
	var nsNames []string
	var runID string
	var leftover *Proc
	t.Run("net", func(t *testing.T) {
		n := NewNet(t)
		runID = n.ID
		a, b := n.AddHost("a"), n.AddHost("b")
		nsNames = []string{n.Switch, a.NS, b.NS}
		l, err := b.Listen(7000)
		if err != nil {
			t.Fatalf("listen in %s: %v", b.NS, err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
		ping := func(from, to *Host) error {
			c, err := from.Dial(to.IP+":7000", time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			buf := make([]byte, 2)
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := io.ReadFull(c, buf); err != nil {
				return err
			}
			if string(buf) != "hi" {
				return fmt.Errorf("got %q, want %q", buf, "hi")
			}
			return nil
		}
		if err := ping(a, b); err != nil {
			t.Fatalf("ping %s -> %s: %v", a.IP, b.IP, err)
		}
		b.LinkDown()
		if err := ping(a, b); err == nil {
			t.Fatalf("ping %s -> %s with b's link down: got success, want failure", a.IP, b.IP)
		}
		b.LinkUp()
		eventually(t, serveTimeout, func() error { return ping(a, b) })

		p := a.StartProgram(sleep, "600")
		if err := p.Stop(); err != nil {
			t.Errorf("stop sleep: %v", err)
		}
		if !p.Exited() {
			t.Errorf("sleep still running after Stop")
		}
		k := b.StartProgram(sleep, "600")
		k.Kill()
		if got, want := k.ExitCode(), -1; got != want {
			t.Errorf("exit code after Kill: got %d, want %d", got, want)
		}
		leftover = a.StartProgram(sleep, "600") // teardown must kill it
	})
	if runID == "" {
		return
	}
	out, err := ipCmd("netns", "list")
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, ns := range nsNames {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == ns {
				t.Errorf("namespace %s still exists after teardown", ns)
			}
		}
	}
	if leftover != nil {
		if ok, _ := leftover.Wait(time.Second); !ok {
			t.Errorf("process %d still running after teardown", leftover.Pid())
		}
	}
	if _, err := os.Stat(runFile(runID)); err == nil {
		t.Errorf("run file %s still exists after teardown", runFile(runID))
	}
}

// TestSweep checks that namespaces of a run whose test process is gone are
// removed, and those of a live run are not.
func TestSweep(t *testing.T) {
	requireEnv(t)
	dead, live := "se"+"dead00", "se"+"11ve00"
	for _, id := range []string{dead, live} {
		if out, err := ipCmd("netns", "add", id+"-sw"); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { ipCmd("netns", "del", id+"-sw"); os.Remove(runFile(id)) })
	}
	if err := writeRunFile(live); err != nil {
		t.Fatal(err)
	}
	// A dead owner: pid 1's start time will not match this one.
	if err := os.WriteFile(runFile(dead), []byte("1 123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sweepLeftovers(t)
	out, _ := ipCmd("netns", "list")
	has := func(ns string) bool {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == ns {
				return true
			}
		}
		return false
	}
	if has(dead + "-sw") {
		t.Errorf("namespace of the dead run still exists")
	}
	if !has(live + "-sw") {
		t.Errorf("namespace of the live run was removed")
	}
	if _, err := os.Stat(runFile(dead)); err == nil {
		t.Errorf("run file of the dead run still exists")
	}
}
