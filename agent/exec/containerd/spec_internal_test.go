package containerd

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-dev/shoal/api"
)

// buildSpec is the OCI spec a task gets on top of containerd's defaults
// (no image: the image's config is containerd's to apply).
func buildSpec(t *testing.T, tk *api.Task, h taskHost) (*oci.Spec, error) {
	t.Helper()
	opts, err := taskSpecOpts(tk, h)
	if err != nil {
		return nil, err
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	base := []oci.SpecOpts{oci.WithProcessArgs("/bin/app", "serve")}
	return oci.GenerateSpec(ctx, nil, &containers.Container{ID: tk.ID}, append(base, opts...)...)
}

func findMount(s *oci.Spec, dest string) (specs.Mount, bool) {
	for _, m := range s.Mounts {
		if m.Destination == dest {
			return m, true
		}
	}
	return specs.Mount{}, false
}

func rlimit(s *oci.Spec, typ string) (specs.POSIXRlimit, bool) {
	for _, r := range s.Process.Rlimits {
		if r.Type == typ {
			return r, true
		}
	}
	return specs.POSIXRlimit{}, false
}

func TestTaskSpecOpts(t *testing.T) {
	bindSrc := t.TempDir()
	tests := []struct {
		name  string
		spec  api.TaskSpec
		host  taskHost
		check func(t *testing.T, s *oci.Spec)
		err   string
	}{
		{name: "defaults", check: func(t *testing.T, s *oci.Spec) {
			if s.Hostname != "task12345678" || !slices.Equal(s.Process.Args, []string{"/bin/app", "serve"}) || s.Root.Readonly || s.Process.Terminal {
				t.Errorf("hostname %q args %q readonly %v tty %v", s.Hostname, s.Process.Args, s.Root.Readonly, s.Process.Terminal)
			}
		}},
		{name: "command replaces the cmd, no image entrypoint", spec: api.TaskSpec{Command: []string{"sh", "-c", "x"}}, check: func(t *testing.T, s *oci.Spec) {
			if !slices.Equal(s.Process.Args, []string{"sh", "-c", "x"}) {
				t.Errorf("args %q", s.Process.Args)
			}
		}},
		{name: "command after the image's entrypoint", spec: api.TaskSpec{Command: []string{"-v"}}, host: taskHost{ImageEntrypoint: []string{"/entry.sh"}, ImageCmd: []string{"serve"}}, check: func(t *testing.T, s *oci.Spec) {
			if !slices.Equal(s.Process.Args, []string{"/entry.sh", "-v"}) {
				t.Errorf("args %q", s.Process.Args)
			}
		}},
		{name: "entrypoint then command as its args", spec: api.TaskSpec{Entrypoint: []string{"/bin/echo"}, Command: []string{"hi"}}, host: taskHost{ImageEntrypoint: []string{"/entry.sh"}, ImageCmd: []string{"serve"}}, check: func(t *testing.T, s *oci.Spec) {
			if !slices.Equal(s.Process.Args, []string{"/bin/echo", "hi"}) {
				t.Errorf("args %q", s.Process.Args)
			}
		}},
		{name: "hostname", spec: api.TaskSpec{Hostname: "db1"}, check: func(t *testing.T, s *oci.Spec) {
			if s.Hostname != "db1" {
				t.Errorf("hostname %q", s.Hostname)
			}
		}},
		{name: "user and groups", spec: api.TaskSpec{User: "1000:1001", Groups: []string{"27", "44"}}, check: func(t *testing.T, s *oci.Spec) {
			u := s.Process.User
			if u.UID != 1000 || u.GID != 1001 || !slices.Contains(u.AdditionalGids, 27) || !slices.Contains(u.AdditionalGids, 44) {
				t.Errorf("user %+v", u)
			}
		}},
		{name: "workdir and env", spec: api.TaskSpec{Workdir: "/srv", Env: []string{"A=1"}}, check: func(t *testing.T, s *oci.Spec) {
			if s.Process.Cwd != "/srv" || !slices.Contains(s.Process.Env, "A=1") {
				t.Errorf("cwd %q env %q", s.Process.Cwd, s.Process.Env)
			}
		}},
		{name: "read-only rootfs", spec: api.TaskSpec{ReadOnly: true}, check: func(t *testing.T, s *oci.Spec) {
			if !s.Root.Readonly {
				t.Error("root not read-only")
			}
		}},
		{name: "tty", spec: api.TaskSpec{TTY: true}, check: func(t *testing.T, s *oci.Spec) {
			if !s.Process.Terminal || !slices.Contains(s.Process.Env, "TERM=xterm") {
				t.Errorf("terminal %v env %q", s.Process.Terminal, s.Process.Env)
			}
		}},
		{name: "cap add and drop", spec: api.TaskSpec{CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"CAP_CHOWN"}}, check: func(t *testing.T, s *oci.Spec) {
			c := s.Process.Capabilities
			for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted} {
				if !slices.Contains(set, "CAP_NET_ADMIN") || slices.Contains(set, "CAP_CHOWN") || !slices.Contains(set, "CAP_KILL") {
					t.Errorf("capabilities %q", set)
				}
			}
		}},
		{name: "drop all, add one", spec: api.TaskSpec{CapAdd: []string{"CAP_NET_BIND_SERVICE"}, CapDrop: []string{"ALL"}}, check: func(t *testing.T, s *oci.Spec) {
			if c := s.Process.Capabilities; !slices.Equal(c.Bounding, []string{"CAP_NET_BIND_SERVICE"}) || !slices.Equal(c.Effective, c.Bounding) {
				t.Errorf("capabilities %+v", c)
			}
		}},
		{name: "add all", spec: api.TaskSpec{CapAdd: []string{"ALL"}}, check: func(t *testing.T, s *oci.Spec) {
			if c := s.Process.Capabilities; len(c.Bounding) != len(api.AllCapabilities()) {
				t.Errorf("capabilities %q", c.Bounding)
			}
		}},
		{name: "sysctls", spec: api.TaskSpec{Sysctls: map[string]string{"net.core.somaxconn": "1024"}}, check: func(t *testing.T, s *oci.Spec) {
			if s.Linux.Sysctl["net.core.somaxconn"] != "1024" {
				t.Errorf("sysctls %v", s.Linux.Sysctl)
			}
		}},
		{name: "ulimits replace the default", spec: api.TaskSpec{Ulimits: []api.Ulimit{{Name: "nofile", Soft: 100, Hard: 200}, {Name: "memlock", Soft: -1, Hard: -1}}}, check: func(t *testing.T, s *oci.Spec) {
			n := 0
			for _, r := range s.Process.Rlimits {
				if r.Type == "RLIMIT_NOFILE" {
					n++
				}
			}
			r, _ := rlimit(s, "RLIMIT_NOFILE")
			m, _ := rlimit(s, "RLIMIT_MEMLOCK")
			if n != 1 || r.Soft != 100 || r.Hard != 200 || m.Soft != ^uint64(0) || m.Hard != ^uint64(0) {
				t.Errorf("rlimits %+v", s.Process.Rlimits)
			}
		}},
		{name: "mounts", spec: api.TaskSpec{Mounts: []api.Mount{
			{Type: api.MountVolume, Source: "data", Target: "/data"},
			{Type: api.MountBind, Source: bindSrc, Target: "/www/", ReadOnly: true},
			{Type: api.MountTmpfs, Target: "/tmp", TmpfsSize: 64 << 20, TmpfsMode: 0o700},
			{Type: api.MountTmpfs, Target: "/run"},
		}}, host: taskHost{Volumes: map[string]string{"data": "/var/lib/shoal/volumes/data/_data"}}, check: func(t *testing.T, s *oci.Spec) {
			want := map[string]specs.Mount{
				"/data": {Destination: "/data", Type: "bind", Source: "/var/lib/shoal/volumes/data/_data", Options: []string{"rbind", "rw"}},
				"/www":  {Destination: "/www", Type: "bind", Source: bindSrc, Options: []string{"rbind", "rprivate", "ro"}},
				"/tmp":  {Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "rw", "size=67108864", "mode=700"}},
				"/run":  {Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "rw", "mode=1777"}},
			}
			for dest, w := range want {
				got, ok := findMount(s, dest)
				if !ok || got.Type != w.Type || got.Source != w.Source || !slices.Equal(got.Options, w.Options) {
					t.Errorf("mount %s: got %+v (found %v), want %+v", dest, got, ok, w)
				}
			}
		}},
		{name: "bind source missing", spec: api.TaskSpec{Mounts: []api.Mount{{Type: api.MountBind, Source: "/no/such/dir", Target: "/x"}}},
			err: "mount /x: bind source /no/such/dir does not exist on this node"},
		{name: "volume not prepared", spec: api.TaskSpec{Mounts: []api.Mount{{Type: api.MountVolume, Source: "v", Target: "/x"}}},
			err: "volume v was not prepared"},
		{name: "network, resolv.conf and hosts", host: taskHost{NetnsPath: "/run/netns/t", ResolvConf: "/s/r.conf", HostsFile: "/s/hosts"}, check: func(t *testing.T, s *oci.Spec) {
			var ns string
			for _, n := range s.Linux.Namespaces {
				if n.Type == specs.NetworkNamespace {
					ns = n.Path
				}
			}
			r, rok := findMount(s, "/etc/resolv.conf")
			h, hok := findMount(s, "/etc/hosts")
			if ns != "/run/netns/t" || !rok || r.Source != "/s/r.conf" || !hok || h.Source != "/s/hosts" || !slices.Contains(h.Options, "ro") {
				t.Errorf("netns %q resolv %+v hosts %+v", ns, r, h)
			}
		}},
		{name: "init", spec: api.TaskSpec{Init: true}, host: taskHost{InitPath: "/usr/bin/tini-static"}, check: func(t *testing.T, s *oci.Spec) {
			m, ok := findMount(s, InitTarget)
			if !ok || m.Source != "/usr/bin/tini-static" || !slices.Equal(s.Process.Args, []string{InitTarget, "--", "/bin/app", "serve"}) {
				t.Errorf("init mount %+v (found %v), args %q", m, ok, s.Process.Args)
			}
		}},
		{name: "init without a binary", spec: api.TaskSpec{Init: true}, err: "--init: this node has no static init binary"},
		{name: "limits", spec: api.TaskSpec{Resources: api.Resources{Limits: api.ResourceAmounts{MemoryBytes: 64 << 20, NanoCPUs: 5e8}}}, check: func(t *testing.T, s *oci.Spec) {
			r := s.Linux.Resources
			if *r.Memory.Limit != 64<<20 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 {
				t.Errorf("resources %+v %+v", r.Memory, r.CPU)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, &api.Task{ID: "task1234567890ab", Spec: tt.spec}, tt.host)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestGroupNamesFromImage(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\nvideo:x:44:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "t"}, oci.WithRootFSPath(root), withGroups([]string{"video", "7"}))
	if err != nil {
		t.Fatal(err)
	}
	if g := s.Process.User.AdditionalGids; !slices.Contains(g, 44) || !slices.Contains(g, 7) {
		t.Errorf("groups %v, want 44 and 7", g)
	}
	_, err = oci.GenerateSpec(ctx, nil, &containers.Container{ID: "t"}, oci.WithRootFSPath(root), withGroups([]string{"nosuch"}))
	if err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown group: %v", err)
	}
}

func TestHostsAndResolvConf(t *testing.T) {
	h, err := hostsFile([]string{"db:10.0.0.5", "10.0.0.6 cache c2"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h, "10.0.0.5\tdb\n") || !strings.Contains(h, "10.0.0.6\tcache c2\n") || !strings.HasPrefix(h, "127.0.0.1\tlocalhost\n") {
		t.Errorf("hosts %q", h)
	}
	r := resolvConf(&api.DNSConfig{Nameservers: []string{"10.0.0.2"}, Search: []string{"a.example", "b"}, Options: []string{"ndots:2"}})
	if want := "nameserver 10.0.0.2\nsearch a.example b\noptions ndots:2\n"; r != want {
		t.Errorf("resolv.conf %q, want %q", r, want)
	}
}
