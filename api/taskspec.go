package api

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/moby/sys/signal"
)

// MountType is what a Mount puts at its target, docker's names.
type MountType string

const (
	// MountVolume is a named local volume: a directory per volume under the
	// node's data dir, made on first use and kept across tasks.
	MountVolume MountType = "volume"
	// MountBind is a file or directory of the node; it must exist there.
	MountBind MountType = "bind"
	// MountTmpfs is a tmpfs of its own for the task.
	MountTmpfs MountType = "tmpfs"
)

// Mount is one filesystem a task's container gets at Target, docker's
// --mount: Source is a volume name (volume) or a host path (bind) and empty
// for tmpfs. VolumeNoCopy keeps a new volume empty instead of copying the
// image's content at Target into it. TmpfsSize is in bytes (0: no limit
// but the kernel's, half the memory), TmpfsMode the permission bits of the
// tmpfs root (0: 01777, as docker).
type Mount struct {
	Type         MountType `json:"type"`
	Source       string    `json:"source,omitempty"`
	Target       string    `json:"target"`
	ReadOnly     bool      `json:"read_only,omitempty"`
	VolumeNoCopy bool      `json:"volume_nocopy,omitempty"`
	TmpfsSize    int64     `json:"tmpfs_size,omitempty"`
	TmpfsMode    uint32    `json:"tmpfs_mode,omitempty"`
}

// Ulimit is one resource limit of the task's processes, docker's --ulimit
// (name without RLIMIT_, like nofile); -1 is unlimited.
type Ulimit struct {
	Name string `json:"name"`
	Soft int64  `json:"soft"`
	Hard int64  `json:"hard"`
}

// DNSConfig is docker's --dns, --dns-search and --dns-option: a task on an
// overlay network keeps the embedded resolver (127.0.0.11) as its
// nameserver and it forwards names it does not know to Nameservers instead
// of the node's; a task without networks gets Nameservers in its
// resolv.conf. Search and Options go into the task's resolv.conf.
type DNSConfig struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Limits on the runtime fields of a task spec (the whole spec is capped too).
const (
	maxMounts     = 64
	maxRuntimeLst = 64 // capabilities, groups, sysctls, ulimits
	maxHosts      = 256
	maxDNS        = 32 // each list of DNSConfig
	maxRuntimeStr = 1024
)

// VolumeNamePattern is docker's rule for volume names.
var VolumeNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ValidVolumeName names what is wrong with a volume name, or returns nil.
func ValidVolumeName(name string) error {
	if !VolumeNamePattern.MatchString(name) || len(name) > 255 {
		return fmt.Errorf("volume name %q: want letters, digits, '_', '.' or '-', starting with a letter or digit (at most 255)", name)
	}
	return nil
}

// capabilities are the Linux capabilities a task may add or drop.
var capabilities = []string{
	"CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
	"CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYSLOG", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE",
	"CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_WAKE_ALARM",
}

// AllCapabilities is every capability NormalizeCapability knows, for "ALL".
func AllCapabilities() []string { return slices.Clone(capabilities) }

// NormalizeCapability turns docker's spellings (chown, CAP_CHOWN, Chown)
// into CAP_CHOWN; "ALL" stays ALL. It fails on a name Linux does not have.
func NormalizeCapability(c string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(c))
	if u == "ALL" {
		return u, nil
	}
	if !strings.HasPrefix(u, "CAP_") {
		u = "CAP_" + u
	}
	if !slices.Contains(capabilities, u) {
		return "", fmt.Errorf("capability %q: not a Linux capability (like NET_ADMIN or CAP_CHOWN, or ALL)", c)
	}
	return u, nil
}

// ulimitNames are docker's --ulimit names and the kernel's resource names.
var ulimitNames = map[string]string{
	"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
	"locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
	"nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
	"rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
	"stack": "RLIMIT_STACK",
}

// RlimitType is the OCI name of a ulimit (nofile -> RLIMIT_NOFILE), "" if unknown.
func RlimitType(name string) string { return ulimitNames[name] }

// Validate names what is wrong with u, or returns nil.
func (u Ulimit) Validate() error {
	if RlimitType(u.Name) == "" {
		names := make([]string, 0, len(ulimitNames))
		for n := range ulimitNames {
			names = append(names, n)
		}
		sort.Strings(names)
		return fmt.Errorf("ulimit %q: unknown name (want one of %s)", u.Name, strings.Join(names, ", "))
	}
	if u.Soft < -1 || u.Hard < -1 {
		return fmt.Errorf("ulimit %s: %d:%d, want numbers from 0 (or -1: unlimited)", u.Name, u.Soft, u.Hard)
	}
	if u.Hard != -1 && (u.Soft == -1 || u.Soft > u.Hard) {
		return fmt.Errorf("ulimit %s: soft limit %d is above the hard limit %d", u.Name, u.Soft, u.Hard)
	}
	return nil
}

var (
	sysctlName = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_-]+)+$`)
	// namespacedSysctls are the sysctls a container may set without
	// changing the node's, as docker allows them (net.* as well, since
	// every task has a network namespace of its own).
	namespacedSysctls = []string{
		"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
		"kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
	}
	hostnamePattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)
)

// ValidateSysctl names what is wrong with a sysctl a task sets, or returns nil.
func ValidateSysctl(name, value string) error {
	if !sysctlName.MatchString(name) {
		return fmt.Errorf("sysctl %q: want a name like net.core.somaxconn", name)
	}
	if !strings.HasPrefix(name, "net.") && !strings.HasPrefix(name, "fs.mqueue.") && !slices.Contains(namespacedSysctls, name) {
		return fmt.Errorf("sysctl %q: not namespaced, it would change the node's setting (allowed: net.*, fs.mqueue.*, kernel.msg*, kernel.sem, kernel.shm*)", name)
	}
	if value == "" || strings.ContainsAny(value, "\n\x00") || len(value) > maxRuntimeStr {
		return fmt.Errorf("sysctl %s: value %q: want one non-empty line", name, value)
	}
	return nil
}

// ParseStopSignal reads a signal as docker does: SIGTERM, TERM or 15.
func ParseStopSignal(s string) (int, error) {
	sig, err := signal.ParseSignal(s)
	if err != nil || sig <= 0 {
		return 0, fmt.Errorf("stop signal %q: want a signal name like SIGTERM or SIGINT, or its number", s)
	}
	return int(sig), nil
}

// ParseHost reads an extra /etc/hosts entry: docker's "host:ip" or Swarm's
// stored "ip host [alias...]". It returns the address and the names.
func ParseHost(s string) (netip.Addr, []string, error) {
	if f := strings.Fields(s); len(f) >= 2 {
		ip, err := netip.ParseAddr(f[0])
		if err != nil {
			return netip.Addr{}, nil, fmt.Errorf("host %q: %q is not an IP address", s, f[0])
		}
		return ip, f[1:], nil
	}
	name, addr, ok := strings.Cut(s, ":")
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return netip.Addr{}, nil, fmt.Errorf("host %q: want HOST:IP, like db:10.0.0.5", s)
	}
	ip, err := netip.ParseAddr(strings.Trim(addr, "[]"))
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("host %q: %q is not an IP address", s, addr)
	}
	return ip, []string{name}, nil
}

// ValidateMount names what is wrong with m, or returns nil.
func (m Mount) Validate() error {
	if m.Target == "" || !path.IsAbs(m.Target) {
		return fmt.Errorf("mount target %q: want an absolute path in the container", m.Target)
	}
	if path.Clean(m.Target) == "/" {
		return fmt.Errorf("mount target %q: cannot mount over the container's root", m.Target)
	}
	if len(m.Target) > maxRuntimeStr || len(m.Source) > maxRuntimeStr {
		return fmt.Errorf("mount %s: source or target longer than %d bytes", m.Target, maxRuntimeStr)
	}
	if m.Type != MountVolume && m.VolumeNoCopy {
		return fmt.Errorf("mount %s: volume-nocopy is only for type=volume", m.Target)
	}
	if m.Type != MountTmpfs && (m.TmpfsSize != 0 || m.TmpfsMode != 0) {
		return fmt.Errorf("mount %s: tmpfs-size and tmpfs-mode are only for type=tmpfs", m.Target)
	}
	switch m.Type {
	case MountVolume:
		if m.Source == "" {
			return fmt.Errorf("mount %s: type=volume needs source=NAME (anonymous volumes are not supported)", m.Target)
		}
		if err := ValidVolumeName(m.Source); err != nil {
			return fmt.Errorf("mount %s: %w", m.Target, err)
		}
	case MountBind:
		if !path.IsAbs(m.Source) {
			return fmt.Errorf("mount %s: type=bind needs source=ABSOLUTE-PATH on the node, got %q", m.Target, m.Source)
		}
	case MountTmpfs:
		if m.Source != "" {
			return fmt.Errorf("mount %s: type=tmpfs takes no source", m.Target)
		}
		if m.TmpfsSize < 0 {
			return fmt.Errorf("mount %s: tmpfs-size %d: must not be negative", m.Target, m.TmpfsSize)
		}
		if m.TmpfsMode > 0o7777 {
			return fmt.Errorf("mount %s: tmpfs-mode %o: want permission bits, at most 7777 (octal)", m.Target, m.TmpfsMode)
		}
	default:
		return fmt.Errorf("mount %s: type %q: want volume, bind or tmpfs", m.Target, m.Type)
	}
	return nil
}

// ValidateRuntime checks and normalizes the fields of t that shape its
// container (mounts, entrypoint, hostname, groups, capabilities, sysctls,
// ulimits, stop signal, DNS, hosts), naming the first thing wrong.
// Capabilities become CAP_ names.
func (t *TaskSpec) ValidateRuntime() error {
	if len(t.Mounts) > maxMounts {
		return fmt.Errorf("mounts: %d, at most %d", len(t.Mounts), maxMounts)
	}
	targets := map[string]bool{}
	for _, m := range t.Mounts {
		if err := m.Validate(); err != nil {
			return err
		}
		tgt := path.Clean(m.Target)
		if targets[tgt] {
			return fmt.Errorf("mount target %s: more than one mount there", tgt)
		}
		targets[tgt] = true
	}
	if len(t.Entrypoint) > 0 && strings.TrimSpace(t.Entrypoint[0]) == "" {
		return errors.New("entrypoint: the first word must not be empty")
	}
	if len(t.Entrypoint) > maxArgsRuntime {
		return fmt.Errorf("entrypoint: %d words, at most %d", len(t.Entrypoint), maxArgsRuntime)
	}
	if t.Hostname != "" && (len(t.Hostname) > 253 || !hostnamePattern.MatchString(t.Hostname)) {
		return fmt.Errorf("hostname %q: want letters, digits, '-' and '.' (RFC 1123, at most 253)", t.Hostname)
	}
	for _, l := range []struct {
		name string
		n    int
	}{{"groups", len(t.Groups)}, {"cap-add", len(t.CapAdd)}, {"cap-drop", len(t.CapDrop)},
		{"sysctls", len(t.Sysctls)}, {"ulimits", len(t.Ulimits)}} {
		if l.n > maxRuntimeLst {
			return fmt.Errorf("%s: %d entries, at most %d", l.name, l.n, maxRuntimeLst)
		}
	}
	for _, g := range t.Groups {
		if g == "" || len(g) > 256 || strings.ContainsAny(g, ": \t\n") {
			return fmt.Errorf("group %q: want a group name or number", g)
		}
	}
	for _, caps := range []*[]string{&t.CapAdd, &t.CapDrop} {
		for i, c := range *caps {
			n, err := NormalizeCapability(c)
			if err != nil {
				return err
			}
			(*caps)[i] = n
		}
	}
	for _, c := range t.CapAdd {
		if c != "ALL" && slices.Contains(t.CapDrop, c) {
			return fmt.Errorf("capability %s: both added and dropped", c)
		}
	}
	keys := make([]string, 0, len(t.Sysctls))
	for k := range t.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := ValidateSysctl(k, t.Sysctls[k]); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, u := range t.Ulimits {
		if err := u.Validate(); err != nil {
			return err
		}
		if seen[u.Name] {
			return fmt.Errorf("ulimit %s: given twice", u.Name)
		}
		seen[u.Name] = true
	}
	if t.StopSignal != "" {
		if _, err := ParseStopSignal(t.StopSignal); err != nil {
			return err
		}
	}
	if len(t.Hosts) > maxHosts {
		return fmt.Errorf("hosts: %d entries, at most %d", len(t.Hosts), maxHosts)
	}
	for _, h := range t.Hosts {
		if len(h) > maxRuntimeStr {
			return fmt.Errorf("host %.32q...: longer than %d bytes", h, maxRuntimeStr)
		}
		if _, _, err := ParseHost(h); err != nil {
			return err
		}
	}
	if d := t.DNS; d != nil {
		for _, l := range []struct {
			name string
			v    []string
		}{{"dns", d.Nameservers}, {"dns-search", d.Search}, {"dns-option", d.Options}} {
			if len(l.v) > maxDNS {
				return fmt.Errorf("%s: %d entries, at most %d", l.name, len(l.v), maxDNS)
			}
			for _, s := range l.v {
				if s == "" || len(s) > 253 || strings.ContainsAny(s, " \t\n") {
					return fmt.Errorf("%s %q: want one word", l.name, s)
				}
			}
		}
		for _, ns := range d.Nameservers {
			if _, err := netip.ParseAddr(ns); err != nil {
				return fmt.Errorf("dns %q: want a nameserver's IP address", ns)
			}
		}
	}
	return nil
}

// maxArgsRuntime bounds the entrypoint's words, as the command's are.
const maxArgsRuntime = 256

// ProcessArgs is the command line a task runs given its image's entrypoint
// and cmd, docker's rules (docker service create IMAGE ARGS and compose's
// command keep the image's entrypoint): Command replaces the image's cmd,
// Entrypoint replaces its entrypoint and then drops the image's cmd, and
// with neither the image's run.
func (t *TaskSpec) ProcessArgs(imageEntrypoint, imageCmd []string) []string {
	switch {
	case len(t.Entrypoint) > 0:
		return append(slices.Clone(t.Entrypoint), t.Command...)
	case len(t.Command) > 0:
		return append(slices.Clone(imageEntrypoint), t.Command...)
	}
	return append(slices.Clone(imageEntrypoint), imageCmd...)
}

// cloneRuntime deep-copies the runtime fields of s.
func (s TaskSpec) cloneRuntime() TaskSpec {
	s.Mounts = cloneSlice(s.Mounts)
	s.Entrypoint = cloneSlice(s.Entrypoint)
	s.Groups = cloneSlice(s.Groups)
	s.CapAdd = cloneSlice(s.CapAdd)
	s.CapDrop = cloneSlice(s.CapDrop)
	s.Ulimits = cloneSlice(s.Ulimits)
	s.Hosts = cloneSlice(s.Hosts)
	if s.Sysctls != nil {
		m := make(map[string]string, len(s.Sysctls))
		for k, v := range s.Sysctls {
			m[k] = v
		}
		s.Sysctls = m
	}
	if s.DNS != nil {
		d := DNSConfig{Nameservers: cloneSlice(s.DNS.Nameservers), Search: cloneSlice(s.DNS.Search), Options: cloneSlice(s.DNS.Options)}
		s.DNS = &d
	}
	return s
}
