package stack

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/shoal-dev/shoal/api"
)

// IDs are the cluster's objects by name.
type IDs struct {
	Networks, Secrets, Configs map[string]string
}

// Resolve returns desired as the API stores it: network, secret and config
// names replaced by or completed with the IDs in ids and the API's
// defaults filled in (mode, restart condition, update and rollback configs,
// endpoint mode, port protocol, file owner and mode), so it can be compared
// with a service's current spec. ForceUpdate is kept from current, if any:
// a redeploy does not undo service update --force.
func Resolve(desired api.ServiceSpec, ids IDs, current *api.ServiceSpec) (api.ServiceSpec, error) {
	s := desired.Clone()
	for i := range s.Task.Secrets {
		r := &s.Task.Secrets[i]
		id, ok := ids.Secrets[r.Name]
		if !ok {
			return s, fmt.Errorf("service %s: secret %s not found", s.Name, r.Name)
		}
		r.ID = id
		if r.Target == "" {
			r.Target = r.Name
		}
		fileDefaults(&r.UID, &r.GID, &r.Mode)
	}
	for i := range s.Task.Configs {
		r := &s.Task.Configs[i]
		id, ok := ids.Configs[r.Name]
		if !ok {
			return s, fmt.Errorf("service %s: config %s not found", s.Name, r.Name)
		}
		r.ID = id
		if r.Target == "" {
			r.Target = "/" + r.Name
		}
		fileDefaults(&r.UID, &r.GID, &r.Mode)
	}
	netIDs := make([]string, 0, len(s.Networks))
	for _, name := range s.Networks {
		id, ok := ids.Networks[name]
		if !ok {
			return s, fmt.Errorf("service %s: network %s not found", s.Name, name)
		}
		if !slices.Contains(netIDs, id) {
			netIDs = append(netIDs, id)
		}
	}
	s.Networks = nil
	if len(netIDs) > 0 {
		s.Networks = netIDs
	}
	if s.Mode == "" {
		s.Mode = api.ModeReplicated
	}
	if s.Task.Restart.Condition == "" {
		s.Task.Restart.Condition = api.RestartAny
		if s.Mode.IsJob() {
			s.Task.Restart.Condition = api.RestartOnFailure
		}
	}
	for _, c := range []**api.UpdateConfig{&s.Update, &s.Rollback} {
		if *c == nil {
			d := api.DefaultUpdateConfig()
			*c = &d
		}
		if (*c).Order == "" {
			(*c).Order = api.OrderStopFirst
		}
		if (*c).FailureAction == "" {
			(*c).FailureAction = api.ActionPause
		}
	}
	if s.Endpoint.Mode == "" {
		s.Endpoint.Mode = api.EndpointVIP
	}
	if err := s.Task.ValidateRuntime(); err != nil { // capabilities as CAP_ names
		return s, fmt.Errorf("service %s: %w", s.Name, err)
	}
	if err := api.NormalizePorts(s.Endpoint.Ports); err != nil {
		return s, fmt.Errorf("service %s: %w", s.Name, err)
	}
	if current != nil {
		s.Task.ForceUpdate = current.Task.ForceUpdate
	}
	return s, nil
}

func fileDefaults(uid, gid *string, mode *uint32) {
	if *uid == "" {
		*uid = "0"
	}
	if *gid == "" {
		*gid = "0"
	}
	if *mode == 0 {
		*mode = api.DefaultFileMode
	}
}

// Same reports whether two resolved specs ask for the same thing.
func Same(a, b api.ServiceSpec) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
