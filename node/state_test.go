package node

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadStateEmptyDir(t *testing.T) {
	st, err := loadState(paths{dir: t.TempDir()})
	if st != nil || err != nil {
		t.Errorf("got %+v, %v, want nil, nil", st, err)
	}
}

func TestLoadStateBad(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		wantErr string
	}{
		{"not json", "{", "is damaged"},
		{"truncated", `{"node_id": "n1", "cluster_id": "c`, "is damaged"},
		{"wrong type", `{"node_id": 7}`, "is damaged"},
		{"empty object", `{}`, "is incomplete"},
		{"no cluster id", `{"node_id": "n1", "role": "worker"}`, "is incomplete"},
		{"no node id", `{"cluster_id": "c1", "role": "manager"}`, "is incomplete"},
		{"unknown role", `{"node_id": "n1", "cluster_id": "c1", "role": "boss"}`, "is incomplete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := paths{dir: t.TempDir()}
			writeFile(t, p.state(), tt.data)
			st, err := loadState(p)
			if err == nil {
				t.Fatalf("got %+v, nil, want an error containing %q", st, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), p.state()) {
				t.Errorf("got %q, want it to name %s and contain %q", err, p.state(), tt.wantErr)
			}
		})
	}
}

func TestLoadStateUnreadable(t *testing.T) {
	p := paths{dir: t.TempDir()}
	// A directory where node.json should be cannot be read as a file.
	if err := os.MkdirAll(p.state(), 0o700); err != nil {
		t.Fatal(err)
	}
	if st, err := loadState(p); err == nil || !strings.HasPrefix(err.Error(), "read node state: ") {
		t.Errorf("got %+v, %v, want a read node state error", st, err)
	}
}

func TestSaveLoadStateRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		st   state
	}{
		{"minimal worker", state{NodeID: "n1", ClusterID: "c1", Role: api.RoleWorker}},
		{"full manager", state{
			NodeID: "n2", ClusterID: "c1", Role: api.RoleManager,
			Addr: "10.0.0.2", Hostname: "h2", ListenIP: "0.0.0.0",
			APIPort: 2377, RaftPort: 2378, GossipPort: 7946,
			GossipKey:          []byte{0, 1, 2, 254, 255},
			MetricsAddr:        ":9100",
			ContainerdAddress:  "/run/other/containerd.sock",
			InsecureRegistries: []string{"10.0.0.1:5000", "reg:5000"},
			Managers:           []api.Endpoints{{API: "10.0.0.1:2377", Raft: "10.0.0.1:2378", Gossip: "10.0.0.1:7946"}},
			PendingCluster: &api.Cluster{
				ID: "c1", CACertPEM: "ca", CAKeyPEM: "key", WorkerToken: "SWMTKN-w", ManagerToken: "SWMTKN-m",
				GossipKey: []byte{9}, CreatedByNodeID: "n2",
				Meta: api.Meta{Version: 3, CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := paths{dir: filepath.Join(t.TempDir(), "not", "yet")}
			in := tt.st
			if err := saveState(p, &in); err != nil {
				t.Fatalf("saveState: %v", err)
			}
			got, err := loadState(p)
			if err != nil {
				t.Fatalf("loadState: %v", err)
			}
			if !reflect.DeepEqual(*got, tt.st) {
				t.Errorf("got %+v, want %+v", *got, tt.st)
			}
			fi, err := os.Stat(p.state())
			if err != nil {
				t.Fatal(err)
			}
			if mode := fi.Mode().Perm(); mode != 0o600 {
				t.Errorf("node.json mode: got %v, want %v", mode, os.FileMode(0o600))
			}
		})
	}
}

func TestSaveStateReplaces(t *testing.T) {
	p := paths{dir: t.TempDir()}
	for _, role := range []api.NodeRole{api.RoleWorker, api.RoleManager} {
		if err := saveState(p, &state{NodeID: "n1", ClusterID: "c1", Role: role}); err != nil {
			t.Fatalf("saveState: %v", err)
		}
	}
	got, err := loadState(p)
	if err != nil {
		t.Fatalf("loadState: %v", err)
	}
	if got.Role != api.RoleManager {
		t.Errorf("role: got %s, want %s", got.Role, api.RoleManager)
	}
	assertNoTmp(t, p.dir)
}

func assertNoTmp(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".tmp") {
			t.Errorf("left behind: %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "certs", "node.key")
	for _, data := range []string{"first, and longer", "second"} {
		if err := writeFileAtomic(path, []byte(data), 0o600); err != nil {
			t.Fatalf("writeFileAtomic: %v", err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != data {
			t.Errorf("content: got %q, want %q", got, data)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode: got %v, want %v", mode, os.FileMode(0o600))
	}
	assertNoTmp(t, dir)

	// A path that cannot be made fails without touching anything.
	blocker := filepath.Join(dir, "file")
	writeFile(t, blocker, "x")
	if err := writeFileAtomic(filepath.Join(blocker, "sub", "f"), []byte("y"), 0o600); err == nil {
		t.Errorf("write under a file: got nil, want an error")
	}
}

func TestSettle(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config // the flags given now
		kept state  // the settings from earlier starts
		want state  // the daemon settings after settle
	}{
		{
			name: "first start without flags: defaults",
			want: state{ContainerdAddress: DefaultContainerdAddress},
		},
		{
			name: "bare restart keeps what was given before",
			kept: state{MetricsAddr: ":9100", ContainerdAddress: "/kept.sock", InsecureRegistries: []string{"reg:5000"}},
			want: state{MetricsAddr: ":9100", ContainerdAddress: "/kept.sock", InsecureRegistries: []string{"reg:5000"}},
		},
		{
			name: "flags given now win",
			cfg:  Config{MetricsAddr: ":9200", ContainerdAddress: "/now.sock", InsecureRegistries: []string{"new:5000"}},
			kept: state{MetricsAddr: ":9100", ContainerdAddress: "/kept.sock", InsecureRegistries: []string{"reg:5000"}},
			want: state{MetricsAddr: ":9200", ContainerdAddress: "/now.sock", InsecureRegistries: []string{"new:5000"}},
		},
		{
			name: "some given, some kept, some default",
			cfg:  Config{MetricsAddr: ":9200"},
			kept: state{InsecureRegistries: []string{"reg:5000"}},
			want: state{MetricsAddr: ":9200", ContainerdAddress: DefaultContainerdAddress, InsecureRegistries: []string{"reg:5000"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Node{cfg: tt.cfg}
			st := tt.kept
			st.NodeID, st.ClusterID, st.Role = "n1", "c1", api.RoleWorker
			n.settle(&st)

			got := state{MetricsAddr: st.MetricsAddr, ContainerdAddress: st.ContainerdAddress, InsecureRegistries: st.InsecureRegistries}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("state: got %+v, want %+v", got, tt.want)
			}
			gotCfg := state{MetricsAddr: n.cfg.MetricsAddr, ContainerdAddress: n.cfg.ContainerdAddress, InsecureRegistries: n.cfg.InsecureRegistries}
			if !reflect.DeepEqual(gotCfg, tt.want) {
				t.Errorf("config: got %+v, want %+v", gotCfg, tt.want)
			}
			if st.NodeID != "n1" || st.ClusterID != "c1" || st.Role != api.RoleWorker {
				t.Errorf("identity changed: got %s %s %s", st.NodeID, st.ClusterID, st.Role)
			}
		})
	}
}

// A setting given once is kept through a save and a bare restart.
func TestSettleSurvivesRestart(t *testing.T) {
	p := paths{dir: t.TempDir()}
	first := &Node{cfg: Config{ContainerdAddress: "/given.sock", InsecureRegistries: []string{"reg:5000"}}}
	st := &state{NodeID: "n1", ClusterID: "c1", Role: api.RoleWorker}
	first.settle(st)
	if err := saveState(p, st); err != nil {
		t.Fatalf("saveState: %v", err)
	}

	kept, err := loadState(p)
	if err != nil {
		t.Fatalf("loadState: %v", err)
	}
	second := &Node{}
	second.settle(kept)
	if second.cfg.ContainerdAddress != "/given.sock" || !slices.Equal(second.cfg.InsecureRegistries, []string{"reg:5000"}) {
		t.Errorf("after restart: got containerd %q registries %v, want /given.sock [reg:5000]",
			second.cfg.ContainerdAddress, second.cfg.InsecureRegistries)
	}
}

func TestWipe(t *testing.T) {
	p := paths{dir: t.TempDir()}
	gone := []string{p.state(), p.caCert(), p.cert(), p.key(), filepath.Join(p.raft(), "raft.db"), filepath.Join(p.raft(), "snapshots", "1-2-3", "state.bin")}
	kept := []string{filepath.Join(p.dir, "notes.txt"), filepath.Join(p.tasks(), "t1.log"), filepath.Join(p.dir, "node.json.bak")}
	for _, f := range append(slices.Clone(gone), kept...) {
		writeFile(t, f, "x")
	}

	if err := wipe(p); err != nil {
		t.Fatalf("wipe: %v", err)
	}
	for _, f := range []string{p.state(), p.certDir(), p.raft()} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s: got %v, want it removed", f, err)
		}
	}
	for _, f := range kept {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: got %v, want it kept", f, err)
		}
	}
	if st, err := loadState(p); st != nil || err != nil {
		t.Errorf("loadState after wipe: got %+v, %v, want nil, nil", st, err)
	}

	// Wiping a directory that holds no node is fine.
	if err := wipe(p); err != nil {
		t.Errorf("second wipe: %v", err)
	}
}

// A beat writes node.json only when the manager list it brings changed.
func TestHeartbeatSavesOnlyChanges(t *testing.T) {
	p := paths{dir: t.TempDir()}
	mgrs := []api.Endpoints{{API: "10.0.0.1:2377", Gossip: "10.0.0.1:7946"}}
	n := &Node{paths: p, st: &state{NodeID: "n1", ClusterID: "c1", Role: api.RoleWorker, Managers: mgrs}}
	tests := []struct {
		name      string
		managers  []api.Endpoints
		wantWrite bool
	}{
		{"same list", mgrs, false},
		{"no list", nil, false},
		{"a new manager", append(slices.Clone(mgrs), api.Endpoints{API: "10.0.0.2:2377"}), true},
		{"the new list again", append(slices.Clone(mgrs), api.Endpoints{API: "10.0.0.2:2377"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Remove(p.state()); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			if err := n.onHeartbeat(context.Background(), api.HeartbeatResponse{Role: api.RoleWorker, Managers: tt.managers}); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(p.state())
			if wrote := err == nil; wrote != tt.wantWrite {
				t.Errorf("node.json written: got %v, want %v", wrote, tt.wantWrite)
			}
		})
	}
}
