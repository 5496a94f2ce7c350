package stack

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/api"
)

// Plan is what a deploy changes, decided from the stack and the cluster's
// current networks and services before anything is written.
type Plan struct {
	// CreateNetworks are the stack networks that do not exist yet.
	CreateNetworks []api.NetworkSpec
	// CreateSecrets and CreateConfigs are the stack's that do not exist
	// yet (with their data). Existing ones are kept: their data cannot
	// change (Swarm's rule); a config whose data differs is an error.
	CreateSecrets, CreateConfigs []Object
	// Create are the services new to the cluster.
	Create []api.ServiceSpec
	// Update are the services whose spec changed.
	Update []Change
	// Unchanged are the services left alone, by name.
	Unchanged []api.ServiceView
	// Stale are the stack's services no longer in the files: removed with
	// prune, listed otherwise.
	Stale []api.ServiceView
}

// Change is a service to update from its current spec to Spec.
type Change struct {
	Current api.ServiceView
	Spec    api.ServiceSpec
}

// Cluster is what exists, as the API lists it (configs with their data).
type Cluster struct {
	Networks []api.Network
	Services []api.ServiceView
	Secrets  []api.Secret
	Configs  []api.Config
}

// Namespace is the stack an object belongs to, "" for none.
func Namespace(labels map[string]string) string { return labels[LabelNamespace] }

// MakePlan compares the stack with the cluster. It refuses, before
// anything is written, what the API would refuse half way: an external
// network that does not exist, a network or service of the same name that
// belongs to no stack or another one, and a published port that a service
// outside the stack uses.
func MakePlan(st *Stack, c Cluster) (*Plan, error) {
	var errs []error
	ids := IDs{Networks: map[string]string{}, Secrets: map[string]string{}, Configs: map[string]string{}}
	byName := map[string]api.Network{}
	for _, n := range c.Networks {
		byName[n.Spec.Name] = n
		ids.Networks[n.Spec.Name] = n.ID
	}
	p := &Plan{}
	secrets := map[string]api.Secret{}
	for _, s := range c.Secrets {
		secrets[s.Spec.Name] = s
		ids.Secrets[s.Spec.Name] = s.ID
	}
	for _, o := range st.Secrets {
		cur, ok := secrets[o.Name]
		switch {
		case o.External && !ok:
			errs = append(errs, fmt.Errorf("secret %s is external but does not exist: create it first (shoal secret create %s FILE)", o.Name, o.Name))
		case o.External:
		case !ok:
			p.CreateSecrets = append(p.CreateSecrets, o)
		case Namespace(cur.Spec.Labels) != st.Namespace:
			errs = append(errs, fmt.Errorf("secret %s exists and is not part of stack %s (declare it external: true to use it)", o.Name, st.Namespace))
		}
	}
	configs := map[string]api.Config{}
	for _, c := range c.Configs {
		configs[c.Spec.Name] = c
		ids.Configs[c.Spec.Name] = c.ID
	}
	for _, o := range st.Configs {
		cur, ok := configs[o.Name]
		switch {
		case o.External && !ok:
			errs = append(errs, fmt.Errorf("config %s is external but does not exist: create it first (shoal config create %s FILE)", o.Name, o.Name))
		case o.External:
		case !ok:
			p.CreateConfigs = append(p.CreateConfigs, o)
		case Namespace(cur.Spec.Labels) != st.Namespace:
			errs = append(errs, fmt.Errorf("config %s exists and is not part of stack %s (declare it external: true to use it)", o.Name, st.Namespace))
		case cur.Spec.Data != nil && !bytes.Equal(cur.Spec.Data, o.Data):
			errs = append(errs, fmt.Errorf("config %s exists with other data: configs cannot change; give the new data another name (name: in the file) or remove the stack first", o.Name))
		}
	}
	services := c.Services
	for _, n := range st.Networks {
		cur, ok := byName[n.Spec.Name]
		switch {
		case n.External && !ok:
			errs = append(errs, fmt.Errorf("network %s is external but does not exist: create it first (shoal network create %s)", n.Spec.Name, n.Spec.Name))
		case n.External && cur.Spec.Ingress:
			errs = append(errs, fmt.Errorf("network %s is the ingress network: services join it by publishing ports", n.Spec.Name))
		case n.External:
		case !ok:
			p.CreateNetworks = append(p.CreateNetworks, n.Spec)
		case Namespace(cur.Spec.Labels) != st.Namespace:
			errs = append(errs, fmt.Errorf("network %s exists and is not part of stack %s (declare it external: true to use it)", n.Spec.Name, st.Namespace))
		}
	}
	current := map[string]api.ServiceView{}
	for _, s := range services {
		current[s.Spec.Name] = s
	}
	wanted := map[string]bool{}
	for _, want := range st.Services {
		wanted[want.Name] = true
		cur, ok := current[want.Name]
		if !ok {
			p.Create = append(p.Create, want)
			continue
		}
		if ns := Namespace(cur.Spec.Labels); ns != st.Namespace {
			errs = append(errs, fmt.Errorf("service %s exists and is not part of stack %s", want.Name, st.Namespace))
			continue
		}
		if want.Mode != cur.Spec.Mode && !(want.Mode == "" && cur.Spec.Mode == api.ModeReplicated) {
			errs = append(errs, fmt.Errorf("service %s: mode cannot change (%s to %s): remove the service first", want.Name, cur.Spec.Mode, want.Mode))
			continue
		}
		resolved, err := Resolve(want, ids, &cur.Spec)
		if err == nil && Same(resolved, cur.Spec) {
			p.Unchanged = append(p.Unchanged, cur)
			continue
		}
		// A network still to be created: the spec changed anyway.
		p.Update = append(p.Update, Change{Current: cur, Spec: want})
	}
	for _, s := range services {
		if Namespace(s.Spec.Labels) == st.Namespace && !wanted[s.Spec.Name] {
			p.Stale = append(p.Stale, s)
		}
	}
	// Published ports held by services outside the stack.
	for _, want := range st.Services {
		for _, port := range want.Endpoint.Ports {
			for _, other := range services {
				if Namespace(other.Spec.Labels) == st.Namespace {
					continue // the stack's own: updated or pruned with it
				}
				for _, op := range other.Spec.Endpoint.Ports {
					// Host-mode ports of two services may be the same: the
					// scheduler keeps their tasks apart.
					if port.Clashes(op) && !(port.Mode() == api.PublishHost && op.Mode() == api.PublishHost) {
						errs = append(errs, fmt.Errorf("service %s: port %d/%s is already published by service %s", want.Name, port.Published, port.Proto(), other.Spec.Name))
					}
				}
			}
		}
	}
	slices.SortFunc(p.Stale, func(a, b api.ServiceView) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	return p, errors.Join(errs...)
}
