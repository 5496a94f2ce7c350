package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-dev/shoal/api"
)

// InitTarget is where a task run with --init finds the init binary, as in docker.
const InitTarget = "/sbin/docker-init"

// initCandidates are the static init binaries an executor looks for on the
// node, docker's first; a dynamic one would not run in every image.
var initCandidates = []string{"docker-init", "tini-static"}

// FindInit returns the path of a static init on the node (PATH, then
// /usr/bin and /usr/libexec/docker), or "" if there is none.
func FindInit() string {
	for _, name := range initCandidates {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/bin", "/usr/libexec/docker"} {
			p := path.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p
			}
		}
	}
	return ""
}

// taskHost is what the node supplies to a task's container beyond the task
// itself: paths on the node, made ready before the spec is built.
type taskHost struct {
	// NetnsPath is the network namespace to join; empty: one of its own.
	NetnsPath string
	// ResolvConf and HostsFile are bind-mounted at /etc/resolv.conf and
	// /etc/hosts when set.
	ResolvConf, HostsFile string
	// Volumes maps a volume name to its directory on the node.
	Volumes map[string]string
	// InitPath is the node's init binary for Init tasks ("": none).
	InitPath string
	// ImageEntrypoint and ImageCmd are the image's, which a task's
	// Command and Entrypoint replace one each.
	ImageEntrypoint, ImageCmd []string
}

// errNoInit is why an --init task is refused on a node without an init binary.
var errNoInit = errors.New("--init: this node has no static init binary (docker-init or tini-static; Debian's tini package ships /usr/bin/tini-static)")

// taskSpecOpts turns a task's spec into OCI spec options, applied after the
// image's config (oci.WithImageConfig). Every docker flag Shoal supports is
// mapped here, so the spec a task gets can be tested without containerd.
// Other mounts (secrets) are appended by the caller after these.
func taskSpecOpts(t *api.Task, h taskHost) ([]oci.SpecOpts, error) {
	s := &t.Spec
	hostname := s.Hostname
	if hostname == "" {
		hostname = shortID(t.ID)
	}
	opts := []oci.SpecOpts{oci.WithHostname(hostname)}
	if len(s.Entrypoint) > 0 || len(s.Command) > 0 {
		opts = append(opts, oci.WithProcessArgs(s.ProcessArgs(h.ImageEntrypoint, h.ImageCmd)...))
	}
	if len(s.Env) > 0 {
		opts = append(opts, oci.WithEnv(s.Env))
	}
	if s.Workdir != "" {
		opts = append(opts, oci.WithProcessCwd(s.Workdir))
	}
	if s.User != "" {
		opts = append(opts, oci.WithUser(s.User))
	}
	if len(s.Groups) > 0 {
		opts = append(opts, withGroups(s.Groups))
	}
	if m := s.Resources.Limits.MemoryBytes; m > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(m)))
	}
	if n := s.Resources.Limits.NanoCPUs; n > 0 {
		opts = append(opts, oci.WithCPUCFS(cpuQuota(n), cpuPeriod))
	}
	if s.ReadOnly {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if s.TTY {
		opts = append(opts, oci.WithTTY)
	}
	if len(s.CapAdd) > 0 || len(s.CapDrop) > 0 {
		opts = append(opts, withCapabilities(s.CapAdd, s.CapDrop))
	}
	if len(s.Sysctls) > 0 {
		opts = append(opts, withSysctls(s.Sysctls))
	}
	if len(s.Ulimits) > 0 {
		opts = append(opts, withUlimits(s.Ulimits))
	}
	if h.NetnsPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: h.NetnsPath}))
	}
	var mounts []specs.Mount
	if h.ResolvConf != "" {
		mounts = append(mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: h.ResolvConf, Options: []string{"rbind", "ro"}})
	}
	if h.HostsFile != "" {
		mounts = append(mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: h.HostsFile, Options: []string{"rbind", "ro"}})
	}
	for _, m := range s.Mounts {
		om, err := ociMount(m, h.Volumes)
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, om)
	}
	if s.Init {
		if h.InitPath == "" {
			return nil, errNoInit
		}
		mounts = append(mounts, specs.Mount{Destination: InitTarget, Type: "bind", Source: h.InitPath, Options: []string{"rbind", "ro"}})
		opts = append(opts, withInit)
	}
	if len(mounts) > 0 {
		opts = append(opts, withMounts(mounts))
	}
	return opts, nil
}

// withMounts adds mounts, each replacing a default one at the same
// destination (containerd's /run or /dev/shm, say), as docker does.
func withMounts(mounts []specs.Mount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Mounts = slices.DeleteFunc(s.Mounts, func(o specs.Mount) bool {
			return slices.ContainsFunc(mounts, func(m specs.Mount) bool { return m.Destination == path.Clean(o.Destination) })
		})
		s.Mounts = append(s.Mounts, mounts...)
		return nil
	}
}

// ociMount is a task mount as the runtime takes it. A bind source must
// exist on the node (docker's rule for --mount type=bind).
func ociMount(m api.Mount, volumes map[string]string) (specs.Mount, error) {
	access := "rw"
	if m.ReadOnly {
		access = "ro"
	}
	target := path.Clean(m.Target)
	switch m.Type {
	case api.MountVolume:
		dir, ok := volumes[m.Source]
		if !ok {
			return specs.Mount{}, fmt.Errorf("mount %s: volume %s was not prepared on this node", target, m.Source)
		}
		return specs.Mount{Destination: target, Type: "bind", Source: dir, Options: []string{"rbind", access}}, nil
	case api.MountBind:
		if _, err := os.Stat(m.Source); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return specs.Mount{}, fmt.Errorf("mount %s: bind source %s does not exist on this node", target, m.Source)
			}
			return specs.Mount{}, fmt.Errorf("mount %s: bind source: %w", target, err)
		}
		return specs.Mount{Destination: target, Type: "bind", Source: m.Source, Options: []string{"rbind", "rprivate", access}}, nil
	case api.MountTmpfs:
		opts := []string{"nosuid", "nodev", "noexec", access}
		if m.TmpfsSize > 0 {
			opts = append(opts, "size="+strconv.FormatInt(m.TmpfsSize, 10))
		}
		mode := m.TmpfsMode
		if mode == 0 {
			mode = 0o1777
		}
		opts = append(opts, "mode="+strconv.FormatUint(uint64(mode), 8))
		return specs.Mount{Destination: target, Type: "tmpfs", Source: "tmpfs", Options: opts}, nil
	}
	return specs.Mount{}, fmt.Errorf("mount %s: type %q: want volume, bind or tmpfs", target, m.Type)
}

// withGroups adds supplementary groups: numbers as they are, names looked
// up in the image's /etc/group.
func withGroups(groups []string) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		var names []string
		for _, g := range groups {
			gid, err := strconv.ParseUint(g, 10, 32)
			if err != nil {
				names = append(names, g)
				continue
			}
			if s.Process == nil {
				s.Process = &specs.Process{}
			}
			if !slices.Contains(s.Process.User.AdditionalGids, uint32(gid)) {
				s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(gid))
			}
		}
		if len(names) == 0 {
			return nil
		}
		if err := oci.WithAppendAdditionalGroups(names...)(ctx, client, c, s); err != nil {
			return fmt.Errorf("--group-add: %w", err)
		}
		return nil
	}
}

// withCapabilities applies docker's rules: drop first (ALL drops every
// default), then add (ALL adds every capability).
func withCapabilities(add, drop []string) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		var caps []string
		if s.Process != nil && s.Process.Capabilities != nil {
			caps = slices.Clone(s.Process.Capabilities.Bounding)
		}
		if slices.Contains(drop, "ALL") {
			caps = nil
		} else {
			caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(drop, c) })
		}
		if slices.Contains(add, "ALL") {
			caps = api.AllCapabilities()
		} else {
			for _, a := range add {
				if !slices.Contains(caps, a) {
					caps = append(caps, a)
				}
			}
		}
		slices.Sort(caps)
		return oci.WithCapabilities(caps)(ctx, client, c, s)
	}
}

func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

// withUlimits sets resource limits, replacing the defaults of the same
// type; -1 is unlimited (RLIM_INFINITY).
func withUlimits(ulimits []api.Ulimit) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		for _, u := range ulimits {
			typ := api.RlimitType(u.Name)
			if typ == "" {
				return fmt.Errorf("ulimit %q: unknown name", u.Name)
			}
			r := specs.POSIXRlimit{Type: typ, Soft: uint64(u.Soft), Hard: uint64(u.Hard)}
			s.Process.Rlimits = slices.DeleteFunc(s.Process.Rlimits, func(o specs.POSIXRlimit) bool { return o.Type == typ })
			s.Process.Rlimits = append(s.Process.Rlimits, r)
		}
		return nil
	}
}

// withInit runs the process under the node's init, mounted at InitTarget,
// as docker-init runs it: "docker-init -- ARGS".
func withInit(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Process == nil || len(s.Process.Args) == 0 {
		return errors.New("--init: the task has no command to run")
	}
	s.Process.Args = append([]string{InitTarget, "--"}, s.Process.Args...)
	return nil
}

// hostsFile is the /etc/hosts of a task with extra hosts: localhost and
// the entries asked for, in order.
func hostsFile(hosts []string) (string, error) {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, h := range hosts {
		ip, names, err := api.ParseHost(h)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, strings.Join(names, " "))
	}
	return b.String(), nil
}

// resolvConf is the resolv.conf of a task without networks that asks for
// DNS settings: its nameservers, search domains and options.
func resolvConf(d *api.DNSConfig) string {
	var b strings.Builder
	for _, ns := range d.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(d.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(d.Search, " "))
	}
	if len(d.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(d.Options, " "))
	}
	return b.String()
}
