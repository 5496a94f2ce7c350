package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

// fileFlags are --secret and --config of service create, and their -add
// and -rm forms on update.
type fileFlags struct {
	secrets, configs     []string
	secretRm, configRm   []string
	secretAdd, configAdd []string
}

func (f *fileFlags) registerCreate(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.secrets, "secret", nil,
		"give the tasks a secret: NAME (at /run/secrets/NAME) or source=NAME,target=PATH,uid=UID,gid=GID,mode=0400 (repeatable)")
	fs.StringArrayVar(&f.configs, "config", nil,
		"give the tasks a config: NAME (at /NAME) or source=NAME,target=PATH,uid=UID,gid=GID,mode=0444 (repeatable)")
}

func (f *fileFlags) registerUpdate(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.secretAdd, "secret-add", nil, "add a secret, NAME or source=NAME,target=PATH,uid=,gid=,mode= (repeatable)")
	fs.StringArrayVar(&f.secretRm, "secret-rm", nil, "remove a secret, by name (repeatable)")
	fs.StringArrayVar(&f.configAdd, "config-add", nil, "add a config, NAME or source=NAME,target=PATH,uid=,gid=,mode= (repeatable)")
	fs.StringArrayVar(&f.configRm, "config-rm", nil, "remove a config, by name (repeatable)")
}

// applyCreate sets the task's secrets and configs.
func (f *fileFlags) applyCreate(t *api.TaskSpec) error {
	for _, s := range f.secrets {
		r, err := parseFileRef("--secret", s)
		if err != nil {
			return err
		}
		t.Secrets = append(t.Secrets, api.SecretReference(r))
	}
	for _, s := range f.configs {
		r, err := parseFileRef("--config", s)
		if err != nil {
			return err
		}
		t.Configs = append(t.Configs, api.ConfigReference(r))
	}
	return nil
}

// applyUpdate removes, then adds, as docker does.
func (f *fileFlags) applyUpdate(t *api.TaskSpec) error {
	for _, name := range f.secretRm {
		n := len(t.Secrets)
		t.Secrets = slices.DeleteFunc(t.Secrets, func(r api.SecretReference) bool { return r.Name == name || r.ID == name })
		if len(t.Secrets) == n {
			return fmt.Errorf("--secret-rm %q: the service has no such secret", name)
		}
	}
	for _, name := range f.configRm {
		n := len(t.Configs)
		t.Configs = slices.DeleteFunc(t.Configs, func(r api.ConfigReference) bool { return r.Name == name || r.ID == name })
		if len(t.Configs) == n {
			return fmt.Errorf("--config-rm %q: the service has no such config", name)
		}
	}
	for _, s := range f.secretAdd {
		r, err := parseFileRef("--secret-add", s)
		if err != nil {
			return err
		}
		t.Secrets = append(t.Secrets, api.SecretReference(r))
	}
	for _, s := range f.configAdd {
		r, err := parseFileRef("--config-add", s)
		if err != nil {
			return err
		}
		t.Configs = append(t.Configs, api.ConfigReference(r))
	}
	return nil
}

// parseFileRef reads NAME or source=NAME,target=PATH,uid=UID,gid=GID,mode=OCTAL
// (src and dst are taken too); the manager fills the defaults.
func parseFileRef(flag, s string) (api.SecretReference, error) {
	var r api.SecretReference
	bad := func(why string) (api.SecretReference, error) {
		return api.SecretReference{}, fmt.Errorf("%s %q: %s", flag, s, why)
	}
	kind := "secret"
	if strings.HasPrefix(flag, "--config") {
		kind = "config"
	}
	if !strings.Contains(s, "=") {
		if err := api.ValidateSecretName(kind, s); err != nil {
			return bad(err.Error())
		}
		r.Name = s
		return r, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return bad(fmt.Sprintf("%q: want KEY=VALUE", kv))
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "source", "src":
			r.Name = v
		case "target", "dst", "destination":
			r.Target = v
		case "uid":
			r.UID = v
		case "gid":
			r.GID = v
		case "mode":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil || m > 0o777 {
				return bad(fmt.Sprintf("mode %q: want octal permission bits, like 0400", v))
			}
			r.Mode = uint32(m)
		default:
			return bad(fmt.Sprintf("unknown key %q: want source, target, uid, gid or mode", k))
		}
	}
	if r.Name == "" {
		return bad("source is required")
	}
	if err := api.ValidateSecretName(kind, r.Name); err != nil {
		return bad(err.Error())
	}
	return r, nil
}
