package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

// containerFlags are docker's container flags of service create (mounts,
// entrypoint, hostname, groups, capabilities, ...), mapped onto TaskSpec.
type containerFlags struct {
	mounts, groups, capAdd, capDrop, sysctls, ulimits []string
	dns, dnsSearch, dnsOptions, hosts                 []string
	entrypoint, hostname, stopSignal                  string
	readOnly, init, tty                               bool
}

func (f *containerFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.mounts, "mount", nil,
		"attach a filesystem, like type=volume,source=NAME,target=/data[,volume-nocopy] or type=bind,source=/srv,target=/www,readonly or type=tmpfs,target=/tmp,tmpfs-size=64m (repeatable)")
	fs.StringVar(&f.entrypoint, "entrypoint", "", `replace the image's entrypoint, like "/bin/sh -c"; the command after IMAGE is then its arguments`)
	fs.StringVar(&f.hostname, "hostname", "", "container hostname (default: the task ID's first 12 characters)")
	fs.StringArrayVar(&f.groups, "group-add", nil, "add a supplementary group, name or GID (repeatable)")
	fs.BoolVar(&f.readOnly, "read-only", false, "mount the container's root filesystem read-only")
	fs.BoolVar(&f.init, "init", false, "run an init (the node's tini-static) as PID 1 that forwards signals and reaps processes")
	fs.StringArrayVar(&f.capAdd, "cap-add", nil, "add a Linux capability, like NET_ADMIN, or ALL (repeatable)")
	fs.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a Linux capability, like CHOWN, or ALL (repeatable)")
	fs.StringArrayVar(&f.sysctls, "sysctl", nil, "set a namespaced kernel parameter, like net.core.somaxconn=1024 (repeatable)")
	fs.StringArrayVar(&f.ulimits, "ulimit", nil, "set a resource limit, NAME=SOFT[:HARD], like nofile=1024:2048 (repeatable)")
	fs.StringVar(&f.stopSignal, "stop-signal", "", "signal that stops a task, like SIGINT (default: the image's, or SIGTERM)")
	fs.StringArrayVar(&f.dns, "dns", nil, "nameserver for names outside the cluster, an IP address (repeatable)")
	fs.StringArrayVar(&f.dnsSearch, "dns-search", nil, "DNS search domain (repeatable)")
	fs.StringArrayVar(&f.dnsOptions, "dns-option", nil, "resolv.conf option, like ndots:2 (repeatable)")
	// docker's service create calls it --host, which is Shoal's global
	// flag (-H, the manager to talk to); docker run's name it is.
	fs.StringArrayVar(&f.hosts, "add-host", nil, "add an /etc/hosts entry, HOST:IP (repeatable; docker service create's --host)")
	fs.BoolVarP(&f.tty, "tty", "t", false, "allocate a terminal (its output goes to the task log)")
}

// apply sets the task's container settings from the flags; nothing is
// changed if one is bad.
func (f *containerFlags) apply(t *api.TaskSpec) error {
	n := t.Clone()
	for _, s := range f.mounts {
		m, err := parseMount(s)
		if err != nil {
			return fmt.Errorf("--mount %q: %w", s, err)
		}
		n.Mounts = append(n.Mounts, m)
	}
	if f.entrypoint != "" {
		words, err := splitWords(f.entrypoint)
		if err != nil {
			return fmt.Errorf("--entrypoint %q: %w", f.entrypoint, err)
		}
		n.Entrypoint = words
	}
	n.Hostname, n.StopSignal = f.hostname, f.stopSignal
	n.Groups = append(n.Groups, f.groups...)
	n.ReadOnly, n.Init, n.TTY = f.readOnly, f.init, f.tty
	var err error
	if n.CapAdd, err = addCaps("--cap-add", nil, f.capAdd); err != nil {
		return err
	}
	if n.CapDrop, err = addCaps("--cap-drop", nil, f.capDrop); err != nil {
		return err
	}
	for _, kv := range f.sysctls {
		k, v, err := parseSysctl("--sysctl", kv)
		if err != nil {
			return err
		}
		if n.Sysctls == nil {
			n.Sysctls = map[string]string{}
		}
		n.Sysctls[k] = v
	}
	for _, s := range f.ulimits {
		u, err := parseUlimit(s)
		if err != nil {
			return fmt.Errorf("--ulimit %q: %w", s, err)
		}
		n.Ulimits = slices.DeleteFunc(n.Ulimits, func(o api.Ulimit) bool { return o.Name == u.Name })
		n.Ulimits = append(n.Ulimits, u)
	}
	if len(f.dns)+len(f.dnsSearch)+len(f.dnsOptions) > 0 {
		n.DNS = &api.DNSConfig{Nameservers: f.dns, Search: f.dnsSearch, Options: f.dnsOptions}
	}
	n.Hosts = append(n.Hosts, f.hosts...)
	if err := n.ValidateRuntime(); err != nil {
		return err
	}
	*t = n
	return nil
}

// updateContainerFlags are the update counterparts of containerFlags.
type updateContainerFlags struct {
	set func(string) bool

	mountAdd, mountRm, groupAdd, groupRm, capAdd, capDrop []string
	sysctlAdd, sysctlRm, ulimitAdd, ulimitRm              []string
	dnsAdd, dnsRm, searchAdd, searchRm, optAdd, optRm     []string
	hostAdd, hostRm                                       []string
	entrypoint, hostname, stopSignal, user, workdir       string
	readOnly, init, tty                                   bool
}

func (f *updateContainerFlags) register(fs *pflag.FlagSet) {
	f.set = fs.Changed
	fs.StringArrayVar(&f.mountAdd, "mount-add", nil, "add or replace a mount (same syntax as create's --mount; one target, one mount) (repeatable)")
	fs.StringArrayVar(&f.mountRm, "mount-rm", nil, "remove the mount at a target path (repeatable)")
	fs.StringVar(&f.entrypoint, "entrypoint", "", `replace the image's entrypoint; "" for the image's`)
	fs.StringVar(&f.hostname, "hostname", "", `container hostname; "" for the default`)
	fs.StringVar(&f.user, "user", "", `user to run as, USER[:GROUP] or UID[:GID]; "" for the image's`)
	fs.StringVar(&f.workdir, "workdir", "", `working directory inside the container; "" for the image's`)
	fs.StringArrayVar(&f.groupAdd, "group-add", nil, "add a supplementary group (repeatable)")
	fs.StringArrayVar(&f.groupRm, "group-rm", nil, "remove a supplementary group (repeatable)")
	fs.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only (--read-only=false: writable)")
	fs.BoolVar(&f.init, "init", false, "run an init as PID 1 (--init=false: none)")
	fs.StringArrayVar(&f.capAdd, "cap-add", nil, "add a Linux capability, taking it off the dropped ones (repeatable)")
	fs.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a Linux capability, taking it off the added ones (repeatable)")
	fs.StringArrayVar(&f.sysctlAdd, "sysctl-add", nil, "add or change a kernel parameter, KEY=VALUE (repeatable)")
	fs.StringArrayVar(&f.sysctlRm, "sysctl-rm", nil, "remove a kernel parameter, KEY (repeatable)")
	fs.StringArrayVar(&f.ulimitAdd, "ulimit-add", nil, "add or change a resource limit, NAME=SOFT[:HARD] (repeatable)")
	fs.StringArrayVar(&f.ulimitRm, "ulimit-rm", nil, "remove a resource limit, NAME (repeatable)")
	fs.StringVar(&f.stopSignal, "stop-signal", "", `signal that stops a task; "" for the image's or SIGTERM`)
	fs.StringArrayVar(&f.dnsAdd, "dns-add", nil, "add a nameserver (repeatable)")
	fs.StringArrayVar(&f.dnsRm, "dns-rm", nil, "remove a nameserver (repeatable)")
	fs.StringArrayVar(&f.searchAdd, "dns-search-add", nil, "add a DNS search domain (repeatable)")
	fs.StringArrayVar(&f.searchRm, "dns-search-rm", nil, "remove a DNS search domain (repeatable)")
	fs.StringArrayVar(&f.optAdd, "dns-option-add", nil, "add a resolv.conf option (repeatable)")
	fs.StringArrayVar(&f.optRm, "dns-option-rm", nil, "remove a resolv.conf option (repeatable)")
	fs.StringArrayVar(&f.hostAdd, "host-add", nil, "add an /etc/hosts entry, HOST:IP (repeatable)")
	fs.StringArrayVar(&f.hostRm, "host-rm", nil, "remove /etc/hosts entries, HOST or HOST:IP (repeatable)")
	fs.BoolVarP(&f.tty, "tty", "t", false, "allocate a terminal (its output goes to the task log)")
}

// apply changes t as the flags say: removals first, then additions, as
// docker does; nothing is changed if one is bad.
func (f *updateContainerFlags) apply(t *api.TaskSpec) error {
	n := t.Clone()
	for _, target := range f.mountRm {
		before := len(n.Mounts)
		n.Mounts = slices.DeleteFunc(n.Mounts, func(m api.Mount) bool { return cleanTarget(m.Target) == cleanTarget(target) })
		if len(n.Mounts) == before {
			return fmt.Errorf("--mount-rm %q: the service has no mount there", target)
		}
	}
	for _, s := range f.mountAdd {
		m, err := parseMount(s)
		if err != nil {
			return fmt.Errorf("--mount-add %q: %w", s, err)
		}
		n.Mounts = slices.DeleteFunc(n.Mounts, func(o api.Mount) bool { return cleanTarget(o.Target) == cleanTarget(m.Target) })
		n.Mounts = append(n.Mounts, m)
	}
	if f.set("entrypoint") {
		words, err := splitWords(f.entrypoint)
		if err != nil {
			return fmt.Errorf("--entrypoint %q: %w", f.entrypoint, err)
		}
		n.Entrypoint = words
	}
	for _, c := range []struct {
		flag string
		dst  *string
		val  string
	}{{"hostname", &n.Hostname, f.hostname}, {"stop-signal", &n.StopSignal, f.stopSignal}, {"user", &n.User, f.user}, {"workdir", &n.Workdir, f.workdir}} {
		if f.set(c.flag) {
			*c.dst = c.val
		}
	}
	for _, c := range []struct {
		flag string
		dst  *bool
		val  bool
	}{{"read-only", &n.ReadOnly, f.readOnly}, {"init", &n.Init, f.init}, {"tty", &n.TTY, f.tty}} {
		if f.set(c.flag) {
			*c.dst = c.val
		}
	}
	n.Groups = removeAll(n.Groups, f.groupRm)
	for _, g := range f.groupAdd {
		if !slices.Contains(n.Groups, g) {
			n.Groups = append(n.Groups, g)
		}
	}
	added, err := addCaps("--cap-add", nil, f.capAdd)
	if err != nil {
		return err
	}
	dropped, err := addCaps("--cap-drop", nil, f.capDrop)
	if err != nil {
		return err
	}
	n.CapAdd, _ = addCaps("", removeAll(n.CapAdd, dropped), added)
	n.CapDrop, _ = addCaps("", removeAll(n.CapDrop, added), dropped)
	for _, k := range f.sysctlRm {
		delete(n.Sysctls, k)
	}
	for _, kv := range f.sysctlAdd {
		k, v, err := parseSysctl("--sysctl-add", kv)
		if err != nil {
			return err
		}
		if n.Sysctls == nil {
			n.Sysctls = map[string]string{}
		}
		n.Sysctls[k] = v
	}
	if len(n.Sysctls) == 0 {
		n.Sysctls = nil
	}
	for _, name := range f.ulimitRm {
		n.Ulimits = slices.DeleteFunc(n.Ulimits, func(u api.Ulimit) bool { return u.Name == name })
	}
	for _, s := range f.ulimitAdd {
		u, err := parseUlimit(s)
		if err != nil {
			return fmt.Errorf("--ulimit-add %q: %w", s, err)
		}
		n.Ulimits = slices.DeleteFunc(n.Ulimits, func(o api.Ulimit) bool { return o.Name == u.Name })
		n.Ulimits = append(n.Ulimits, u)
	}
	var d api.DNSConfig
	if n.DNS != nil {
		d = *n.DNS
	}
	d.Nameservers = appendNew(removeAll(d.Nameservers, f.dnsRm), f.dnsAdd)
	d.Search = appendNew(removeAll(d.Search, f.searchRm), f.searchAdd)
	d.Options = appendNew(removeAll(d.Options, f.optRm), f.optAdd)
	n.DNS = nil
	if len(d.Nameservers)+len(d.Search)+len(d.Options) > 0 {
		n.DNS = &d
	}
	for _, rm := range f.hostRm {
		name, ip, _ := strings.Cut(rm, ":")
		n.Hosts = slices.DeleteFunc(n.Hosts, func(h string) bool {
			hip, names, err := api.ParseHost(h)
			return err == nil && slices.Contains(names, name) && (ip == "" || hip.String() == ip)
		})
	}
	n.Hosts = appendNew(n.Hosts, f.hostAdd)
	if err := n.ValidateRuntime(); err != nil {
		return err
	}
	*t = n
	return nil
}

func cleanTarget(p string) string {
	for len(p) > 1 && strings.HasSuffix(p, "/") {
		p = p[:len(p)-1]
	}
	return p
}

// removeAll returns list without the values in rm (nil if none is left).
func removeAll(list, rm []string) []string {
	out := slices.DeleteFunc(slices.Clone(list), func(s string) bool { return slices.Contains(rm, s) })
	if len(out) == 0 {
		return nil
	}
	return out
}

// appendNew appends the values of add that list does not hold yet.
func appendNew(list, add []string) []string {
	for _, s := range add {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}

// addCaps appends capabilities, normalized (CAP_ names), each once.
func addCaps(flag string, list, add []string) ([]string, error) {
	for _, c := range add {
		n, err := api.NormalizeCapability(c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		if !slices.Contains(list, n) {
			list = append(list, n)
		}
	}
	return list, nil
}

func parseSysctl(flag, kv string) (string, string, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return "", "", fmt.Errorf("%s %q: want KEY=VALUE, like net.core.somaxconn=1024", flag, kv)
	}
	if err := api.ValidateSysctl(k, v); err != nil {
		return "", "", fmt.Errorf("%s: %w", flag, err)
	}
	return k, v, nil
}

// parseUlimit reads docker's NAME=SOFT[:HARD]; a lone value is both.
func parseUlimit(s string) (api.Ulimit, error) {
	name, vals, ok := strings.Cut(s, "=")
	if !ok {
		return api.Ulimit{}, errors.New("want NAME=SOFT[:HARD], like nofile=1024:2048")
	}
	soft, hard, hasHard := strings.Cut(vals, ":")
	if !hasHard {
		hard = soft
	}
	u := api.Ulimit{Name: name}
	var err error
	if u.Soft, err = strconv.ParseInt(soft, 10, 64); err != nil {
		return u, fmt.Errorf("soft limit %q: want a number (-1: unlimited)", soft)
	}
	if u.Hard, err = strconv.ParseInt(hard, 10, 64); err != nil {
		return u, fmt.Errorf("hard limit %q: want a number (-1: unlimited)", hard)
	}
	return u, u.Validate()
}

// parseMount reads docker's --mount syntax: comma-separated KEY=VALUE
// fields (CSV, so a value may be quoted), type volume unless said.
func parseMount(s string) (api.Mount, error) {
	r := csv.NewReader(strings.NewReader(s))
	fields, err := r.Read()
	if err != nil {
		return api.Mount{}, fmt.Errorf("want KEY=VALUE fields separated by commas: %w", err)
	}
	m := api.Mount{Type: api.MountVolume}
	boolean := func(key, val string, isSet bool) (bool, error) {
		if !isSet {
			return true, nil
		}
		switch strings.ToLower(val) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return false, fmt.Errorf("%s=%s: want true or false", key, val)
	}
	for _, field := range fields {
		key, val, isSet := strings.Cut(field, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		switch key {
		case "type":
			m.Type = api.MountType(strings.ToLower(val))
		case "source", "src":
			m.Source = val
		case "target", "dst", "destination":
			m.Target = val
		case "readonly", "ro":
			if m.ReadOnly, err = boolean(key, val, isSet); err != nil {
				return m, err
			}
		case "volume-nocopy":
			if m.VolumeNoCopy, err = boolean(key, val, isSet); err != nil {
				return m, err
			}
		case "tmpfs-size":
			if m.TmpfsSize, err = parseBytes(val); err != nil {
				return m, fmt.Errorf("tmpfs-size=%s: %w", val, err)
			}
		case "tmpfs-mode":
			mode, err := strconv.ParseUint(val, 8, 32)
			if err != nil {
				return m, fmt.Errorf("tmpfs-mode=%s: want octal permission bits, like 1770", val)
			}
			m.TmpfsMode = uint32(mode)
		case "volume-driver":
			if val != "local" {
				return m, fmt.Errorf("volume-driver=%s: only the local driver is supported", val)
			}
		case "bind-propagation", "bind-nonrecursive", "volume-label", "volume-opt", "consistency", "bind-recursive":
			return m, fmt.Errorf("%s is not supported", key)
		default:
			return m, fmt.Errorf("unknown field %q (want type, source, target, readonly, volume-nocopy, tmpfs-size or tmpfs-mode)", key)
		}
	}
	if err := m.Validate(); err != nil {
		return m, err
	}
	return m, nil
}
