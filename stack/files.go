package stack

import (
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-dev/shoal/api"
)

// Object is a secret or config a stack's services use.
type Object struct {
	// Name is the cluster-wide name: NAMESPACE_KEY unless the file names it.
	Name   string
	Labels map[string]string
	// External objects must exist; the stack neither creates nor removes them.
	External bool
	// File is where the data is read from (ReadData); Data is the data of
	// an inline content: or environment: object.
	File string
	Data []byte
}

// convertObjects maps the top-level secrets or configs (kind names which).
func convertObjects(ns, kind string, objs map[string]types.FileObjectConfig, env types.Mapping) ([]Object, map[string]string, []error) {
	var out []Object
	var errs []error
	names := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(objs)) {
		c := objs[key]
		o := Object{Name: c.Name, External: bool(c.External)}
		if o.Name == "" {
			o.Name = key
			if !o.External {
				o.Name = ns + "_" + key
			}
		}
		names[key] = o.Name
		if o.External {
			out = append(out, o)
			continue
		}
		if err := api.ValidateSecretName(kind, o.Name); err != nil {
			errs = append(errs, fmt.Errorf("%ss.%s: %w", kind, key, err))
			continue
		}
		o.Labels = withNamespace(c.Labels, ns)
		switch {
		case c.File != "":
			o.File = c.File
		case c.Content != "":
			o.Data = []byte(c.Content)
		case c.Environment != "":
			v, ok := env[c.Environment]
			if !ok {
				errs = append(errs, fmt.Errorf("%ss.%s: environment variable %s is not set", kind, key, c.Environment))
				continue
			}
			o.Data = []byte(v)
		default:
			errs = append(errs, fmt.Errorf("%ss.%s: want file, content, environment or external", kind, key))
			continue
		}
		out = append(out, o)
	}
	return out, names, errs
}

// ReadData reads the data of the stack's secrets and configs from their
// files, checking the size limit.
func ReadData(st *Stack) error {
	for kind, objs := range map[string][]Object{"secret": st.Secrets, "config": st.Configs} {
		for i := range objs {
			o := &objs[i]
			if o.External {
				continue
			}
			if o.File != "" {
				b, err := os.ReadFile(o.File)
				if err != nil {
					return fmt.Errorf("%s %s: %w", kind, o.Name, err)
				}
				o.Data = b
			}
			if err := api.ValidateSecretData(kind, o.Name, o.Data); err != nil {
				return err
			}
		}
	}
	return nil
}

func fileMode(m *types.FileMode) (uint32, error) {
	if m == nil {
		return 0, nil
	}
	if *m < 0 || *m > 0o777 {
		return 0, fmt.Errorf("mode %#o: want permission bits, at most 0777", *m)
	}
	return uint32(*m), nil
}

// convertFileRefs maps a service's secrets and configs to references by
// the objects' cluster names, with docker's default targets.
func convertFileRefs(t *api.TaskSpec, s types.ServiceConfig, secretNames, configNames map[string]string) error {
	for _, r := range s.Secrets {
		name, ok := secretNames[r.Source]
		if !ok {
			return fmt.Errorf("secrets: %q is not declared in the top-level secrets", r.Source)
		}
		mode, err := fileMode(r.Mode)
		if err != nil {
			return fmt.Errorf("secrets: %s: %w", r.Source, err)
		}
		target := r.Target
		if target == "" {
			target = r.Source
		}
		t.Secrets = append(t.Secrets, api.SecretReference{Name: name, Target: target, UID: r.UID, GID: r.GID, Mode: mode})
	}
	for _, r := range s.Configs {
		name, ok := configNames[r.Source]
		if !ok {
			return fmt.Errorf("configs: %q is not declared in the top-level configs", r.Source)
		}
		mode, err := fileMode(r.Mode)
		if err != nil {
			return fmt.Errorf("configs: %s: %w", r.Source, err)
		}
		target := r.Target
		if target == "" {
			target = "/" + r.Source
		}
		t.Configs = append(t.Configs, api.ConfigReference{Name: name, Target: target, UID: r.UID, GID: r.GID, Mode: mode})
	}
	return nil
}
