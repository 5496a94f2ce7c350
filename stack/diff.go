package stack

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/shoal-dev/shoal/api"
)

// Resolve returns desired as the API stores it: network names replaced by
// the IDs in netIDs and the API's defaults filled in (mode, restart
// condition, update and rollback configs, endpoint mode, port protocol), so
// it can be compared with a service's current spec. ForceUpdate is kept
// from current, if any: a redeploy does not undo service update --force.
func Resolve(desired api.ServiceSpec, netIDs map[string]string, current *api.ServiceSpec) (api.ServiceSpec, error) {
	s := desired.Clone()
	ids := make([]string, 0, len(s.Networks))
	for _, name := range s.Networks {
		id, ok := netIDs[name]
		if !ok {
			return s, fmt.Errorf("service %s: network %s not found", s.Name, name)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	s.Networks = nil
	if len(ids) > 0 {
		s.Networks = ids
	}
	if s.Mode == "" {
		s.Mode = api.ModeReplicated
	}
	if s.Task.Restart.Condition == "" {
		s.Task.Restart.Condition = api.RestartAny
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
	for i := range s.Endpoint.Ports {
		if s.Endpoint.Ports[i].Protocol == "" {
			s.Endpoint.Ports[i].Protocol = api.ProtocolTCP
		}
	}
	if current != nil {
		s.Task.ForceUpdate = current.Task.ForceUpdate
	}
	return s, nil
}

// Same reports whether two resolved specs ask for the same thing.
func Same(a, b api.ServiceSpec) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
