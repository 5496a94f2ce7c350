package e2e

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	bolt "go.etcd.io/bbolt"
)

// TestConsistency: read-your-writes on followers, forwarding after the
// leader is cut off, a restarted manager that does not answer from a
// half-replayed log, a damaged raft log, and the recovery of a manager from
// the others.
func TestConsistency(t *testing.T) {
	requireEnv(t)
	shoalBin(t)
	c := NewCluster(t, 3, 0)
	leader, err := c.Leader(c.Managers...)
	if err != nil {
		t.Fatal(err)
	}
	follower := others(c.Managers, leader)[0]
	services := map[string]bool{}

	t.Run("follower create then inspect", func(t *testing.T) {
		ok := 0
		for i := range 20 {
			name := fmt.Sprintf("ryw%d", i)
			args := []string{"service", "create", "--name", name, "--replicas", "0", "--detach"}
			if i%2 == 1 {
				args[len(args)-1] = "--detach=false" // its own reads follow the create
			}
			if _, err := follower.Shoal(append(args, "busybox")...); err != nil {
				t.Errorf("create %s on follower %s: %v", name, follower.Name, err)
				continue
			}
			services[name] = true
			if _, err := follower.Shoal("service", "inspect", name); err != nil {
				t.Errorf("inspect %s right after its create on follower %s: %v", name, follower.Name, err)
				continue
			}
			ok++
		}
		report(t, "FIGURE follower create then inspect on the same follower: %d/20", ok)
	})

	t.Run("forward after leader cut", func(t *testing.T) {
		// Three rounds: cut the leader, write through a follower at once
		// (retrying what is refused), heal, settle.
		var took []time.Duration
		firstTry := 0
		for round := range 3 {
			lead, err := c.Leader(c.Managers...)
			if err != nil {
				t.Fatal(err)
			}
			via := others(c.Managers, lead)[0]
			target := c.IDs[via.Name]
			t.Logf("round %d: cutting off the leader %s; writing through %s", round, lead.Name, via.Name)
			lead.LinkDown()
			start := time.Now()
			attempts := 0
			var errs []string
			_, err = poll(20*time.Second, func() error {
				attempts++
				err := write(via, 10*time.Second, target, fmt.Sprintf("cut%d=%d", round, attempts))
				if err != nil {
					errs = append(errs, fmt.Sprintf("%.2fs: %v", time.Since(start).Seconds(), err))
				}
				return err
			})
			d := time.Since(start)
			if round == 0 {
				// The cut-off old leader has no quorum: it refuses reads
				// rather than answer from a state that may be stale.
				_, lsErr := lead.Shoal("service", "ls")
				if lsErr == nil || !strings.Contains(lsErr.Error(), "no leader") {
					t.Errorf("service ls on the cut-off %s: got %v, want a refusal saying there is no leader", lead.Name, lsErr)
				} else {
					report(t, "service ls on a cut-off manager: %s", lsErr.Error()[strings.Index(lsErr.Error(), "Error: "):])
				}
			}
			lead.LinkUp()
			if err != nil {
				t.Fatalf("no write through %s after the leader was cut: %s", via.Name, strings.Join(errs, "; "))
			}
			took = append(took, d)
			if attempts == 1 {
				firstTry++
			}
			for _, e := range errs {
				t.Logf("refused: %s", e)
			}
			for _, m := range c.Managers {
				eventually(t, serveTimeout, func() error { return c.Settled(m) })
			}
		}
		slices.Sort(took)
		report(t, "FIGURE forward after leader cut: write through a follower acknowledged %.2f-%.2fs after the cut (3 rounds, %d/3 on the first attempt)",
			took[0].Seconds(), took[len(took)-1].Seconds(), firstTry)
	})

	// Add services so a restarted manager has a log to replay.
	newLeader, err := c.Leader(c.Managers...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		name := fmt.Sprintf("bulk%d", i)
		if _, err := newLeader.Shoal("service", "create", "--name", name, "--replicas", "0", "--detach", "busybox"); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		services[name] = true
	}

	restarted := others(c.Managers, newLeader)[0]
	t.Run("restarted manager answers complete or refuses", func(t *testing.T) {
		if err := restarted.Daemon().Stop(); err != nil {
			t.Fatalf("stop %s: %v", restarted.Name, err)
		}
		restarted.Agent()
		var complete, refused int
		counts := map[int]int{}
		reasons := map[string]bool{}
		deadline := time.Now().Add(30 * time.Second)
		for complete < 5 && time.Now().Before(deadline) {
			n, err := serviceCount(restarted)
			switch {
			case err != nil:
				refused++
				msg := err.Error()
				if i := strings.Index(msg, "Error: "); i >= 0 {
					msg = msg[i:]
				}
				reasons[msg] = true
			case n == len(services):
				complete++
			default:
				counts[n]++
			}
		}
		if len(counts) > 0 {
			t.Errorf("restarted %s answered service ls with incomplete lists (services: answers) %v, want %d services or a refusal", restarted.Name, counts, len(services))
		}
		if complete == 0 {
			t.Fatalf("restarted %s never answered service ls with the %d services", restarted.Name, len(services))
		}
		report(t, "FIGURE restarted manager service ls: %d complete, %d refused (non-zero exit), %d incomplete", complete, refused, len(counts))
		for r := range reasons {
			t.Logf("refused: %s", r)
		}
	})

	damaged := restarted
	t.Run("damaged raft log", func(t *testing.T) {
		if err := damaged.Daemon().Stop(); err != nil {
			t.Fatalf("stop %s: %v", damaged.Name, err)
		}
		file, index := damageLog(t, filepath.Join(damaged.DataDir, "raft"))
		p := damaged.Agent()
		if exited, _ := p.Wait(30 * time.Second); !exited {
			t.Fatalf("%s with a damaged raft log still runs after 30s", damaged.Name)
		}
		if code := p.ExitCode(); code != 3 {
			t.Errorf("got exit code %d, want 3:\n%s", code, tail(p.Log(), 20))
		}
		log := p.Log()
		wants := []string{file, "Recovering a manager"}
		if index > 0 {
			wants = append(wants, fmt.Sprintf("entry %d", index))
		}
		for _, want := range wants {
			if !strings.Contains(log, want) {
				t.Errorf("output does not name %q:\n%s", want, tail(log, 20))
			}
		}
		for _, bad := range []string{"panic", "goroutine "} {
			if strings.Contains(log, bad) {
				t.Errorf("output holds %q:\n%s", bad, tail(log, 40))
			}
		}
		report(t, "damaged raft log: exit %d, %q", p.ExitCode(), firstLine(log, "Error:"))
	})

	t.Run("recover a manager from the others", func(t *testing.T) {
		healthy := others(c.Managers, damaged)[0]
		id := c.IDs[damaged.Name]
		eventually(t, 30*time.Second, func() error {
			_, err := healthy.Shoal("node", "demote", id)
			if err != nil && strings.Contains(err.Error(), "already a worker") {
				return nil
			}
			return err
		})
		if _, err := healthy.Shoal("node", "rm", "--force", id); err != nil {
			t.Fatal(err)
		}
		damaged.ResetDataDir()
		start := time.Now()
		damaged.Join(c.Token(t, healthy, "manager"), healthy.IP)
		c.WaitServing(t, damaged)
		eventually(t, serveTimeout, func() error { return c.Settled(damaged) })
		eventually(t, serveTimeout, func() error {
			n, err := serviceCount(damaged)
			if err != nil {
				return err
			}
			if n != len(services) {
				return fmt.Errorf("%s lists %d services, want %d", damaged.Name, n, len(services))
			}
			return nil
		})
		for name := range services {
			if _, err := damaged.Shoal("service", "inspect", name); err != nil {
				t.Errorf("after recovery: %v", err)
			}
		}
		report(t, "FIGURE manager recovered (data dir wiped, joined again): state intact on it %.2fs after the join", time.Since(start).Seconds())
	})
}

// serviceCount is the number of services `service ls` lists on h.
func serviceCount(h *Host) (int, error) {
	out, err := h.Shoal("service", "ls", "--format", "json")
	if err != nil {
		return 0, err
	}
	var views []api.ServiceView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		return 0, fmt.Errorf("service ls: %w: %q", err, out)
	}
	return len(views), nil
}

// damageLog damages a stopped manager's raft log in dir and returns the
// file the error must name and, when known, the entry.
func damageLog(t *testing.T, dir string) (string, uint64) {
	t.Helper()
	segments, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(segments) == 0 {
		db := filepath.Join(dir, "raft.db")
		return db, damageLastEntry(t, db)
	}
	sort.Strings(segments)
	tail := segments[len(segments)-1]
	return tail, damageSegmentEntry(t, tail)
}

// damageSegmentEntry overwrites the payload of an entry in the middle of a
// raft-wal segment (BASEINDEX-ID.wal) with 0xff, keeping the frames intact,
// as a bad sector under committed data would; it returns the entry's index.
// (Damage to frame headers reads as a torn last write and raft-wal drops
// the tail after it: raft then fetches it again from the leader.)
func damageSegmentEntry(t *testing.T, path string) uint64 {
	t.Helper()
	base, _, _ := strings.Cut(filepath.Base(path), "-")
	baseIndex, err := strconv.ParseUint(base, 10, 64)
	if err != nil {
		t.Fatalf("segment name %s: %v", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const fileHeader, frameHeader = 32, 8
	type frame struct{ off, n int }
	var entries []frame
	committed := 0 // entries before the last commit frame
	for off := fileHeader; off+frameHeader <= len(data); {
		typ, n := data[off], int(binary.LittleEndian.Uint32(data[off+4:off+8]))
		switch typ {
		case 1: // entry
			entries = append(entries, frame{off + frameHeader, n})
		case 2: // index
		case 3: // commit: n is a CRC, no payload
			committed = len(entries)
			off += frameHeader
			continue
		default:
			off = len(data)
			continue
		}
		off += frameHeader + n + (8-n%8)%8
	}
	if committed < 4 {
		t.Fatalf("%s: %d committed entries, too few to damage one", path, committed)
	}
	k := committed / 2
	e := entries[k]
	for i := e.off; i < e.off+e.n; i++ {
		data[i] = 0xff
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("damaged entry %d (%d bytes) of %s", baseIndex+uint64(k), e.n, path)
	return baseIndex + uint64(k)
}

// damageLastEntry overwrites the newest entry of a stopped manager's raft
// log with bytes no decoder accepts, and returns its index.
func damageLastEntry(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	var index uint64
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("logs"))
		if b == nil {
			return errors.New("no logs bucket")
		}
		k, _ := b.Cursor().Last()
		if k == nil {
			return errors.New("empty log")
		}
		index = binary.BigEndian.Uint64(k)
		return b.Put(k, []byte{0xc1, 0xc1, 0xc1})
	})
	if err != nil {
		t.Fatalf("damage %s: %v", path, err)
	}
	return index
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
