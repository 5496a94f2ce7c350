package stack

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-dev/shoal/api"
)

// convertRuntime maps the container settings of a service: entrypoint,
// hostname, groups, read_only, init, capabilities, sysctls, ulimits, stop
// signal, DNS, extra hosts, tty, tmpfs and volumes. The API checks them
// again (api.TaskSpec.ValidateRuntime); checking here names the service.
func convertRuntime(t *api.TaskSpec, s types.ServiceConfig, volumes types.Volumes) error {
	t.Entrypoint = slices.Clone([]string(s.Entrypoint))
	if len(t.Entrypoint) == 0 {
		t.Entrypoint = nil
	}
	t.Hostname = s.Hostname
	t.Groups = slices.Clone(s.GroupAdd)
	t.ReadOnly = s.ReadOnly
	t.Init = s.Init != nil && *s.Init
	t.CapAdd = slices.Clone(s.CapAdd)
	t.CapDrop = slices.Clone(s.CapDrop)
	if len(s.Sysctls) > 0 {
		t.Sysctls = maps.Clone(map[string]string(s.Sysctls))
	}
	for _, name := range slices.Sorted(maps.Keys(s.Ulimits)) {
		u := s.Ulimits[name]
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		t.Ulimits = append(t.Ulimits, api.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	t.StopSignal = s.StopSignal
	if len(s.DNS)+len(s.DNSSearch)+len(s.DNSOpts) > 0 {
		t.DNS = &api.DNSConfig{Nameservers: slices.Clone([]string(s.DNS)), Search: slices.Clone([]string(s.DNSSearch)), Options: slices.Clone(s.DNSOpts)}
	}
	for _, host := range slices.Sorted(maps.Keys(s.ExtraHosts)) {
		for _, ip := range s.ExtraHosts[host] {
			t.Hosts = append(t.Hosts, host+":"+ip)
		}
	}
	t.TTY = s.Tty
	for _, target := range s.Tmpfs {
		t.Mounts = append(t.Mounts, api.Mount{Type: api.MountTmpfs, Target: target})
	}
	for _, v := range s.Volumes {
		m, err := convertVolume(v, volumes)
		if err != nil {
			return fmt.Errorf("volumes: %s: %w", v.Target, err)
		}
		t.Mounts = append(t.Mounts, m)
	}
	check := t.Clone()
	if err := check.ValidateRuntime(); err != nil {
		return err
	}
	return nil
}

func convertVolume(v types.ServiceVolumeConfig, volumes types.Volumes) (api.Mount, error) {
	m := api.Mount{Target: v.Target, ReadOnly: v.ReadOnly}
	switch v.Type {
	case types.VolumeTypeVolume:
		m.Type = api.MountVolume
		if v.Source == "" {
			return m, errors.New("an anonymous volume: Shoal volumes have names (write NAME:" + v.Target + " and declare NAME under volumes)")
		}
		decl, ok := volumes[v.Source]
		if !ok {
			return m, fmt.Errorf("volume %q is not declared in the top-level volumes", v.Source)
		}
		if decl.Driver != "" && decl.Driver != "local" {
			return m, fmt.Errorf("volume %s: driver %q: Shoal has node-local volumes only", v.Source, decl.Driver)
		}
		m.Source = decl.Name
		if m.Source == "" {
			m.Source = v.Source
		}
		if v.Volume != nil {
			m.VolumeNoCopy = v.Volume.NoCopy
		}
	case types.VolumeTypeBind:
		m.Type = api.MountBind
		m.Source = v.Source
	case types.VolumeTypeTmpfs:
		m.Type = api.MountTmpfs
		if v.Tmpfs != nil {
			m.TmpfsSize = int64(v.Tmpfs.Size)
			m.TmpfsMode = v.Tmpfs.Mode
		}
	default:
		return m, fmt.Errorf("type %q: want volume, bind or tmpfs", v.Type)
	}
	return m, nil
}
