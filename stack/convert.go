package stack

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-dev/shoal/api"
)

// LabelNamespace marks every object of a stack with the stack's name, as
// docker does, so tools keyed on it work.
const LabelNamespace = "com.docker.stack.namespace"

// Stack is what a compose project asks of the cluster.
type Stack struct {
	Namespace string
	// Networks are the stack's own networks (to create) and the external
	// ones its services join (to exist already), sorted by name.
	Networks []Network
	// Services are complete specs, sorted by name; their Networks,
	// Secrets and Configs are by name.
	Services []api.ServiceSpec
	// Secrets and Configs are the ones the services use, sorted by name;
	// their data is read by ReadData.
	Secrets, Configs []Object
}

// Network is one network a stack's services join.
type Network struct {
	// Spec.Name is the cluster-wide name: NAMESPACE_KEY unless the file
	// names it.
	Spec api.NetworkSpec
	// External networks must exist; the stack neither creates nor removes them.
	External bool
}

var serviceNameRE = regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`)

// Convert maps a loaded project to the stack namespace's specs. It is pure:
// it reads nothing but p. Errors name the service and key.
func Convert(p *types.Project, namespace string) (*Stack, error) {
	if err := CheckNamespace(namespace); err != nil {
		return nil, err
	}
	st := &Stack{Namespace: namespace}
	var errs []error
	netNames := map[string]string{} // compose key -> cluster name
	for _, key := range slices.Sorted(maps.Keys(p.Networks)) {
		n, err := convertNetwork(namespace, key, p.Networks[key])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		netNames[key] = n.Spec.Name
		st.Networks = append(st.Networks, n)
	}
	secrets, secretNames, serrs := convertObjects(namespace, "secret", secretObjects(p.Secrets), p.Environment)
	configs, configNames, cerrs := convertObjects(namespace, "config", configObjects(p.Configs), p.Environment)
	errs = append(append(errs, serrs...), cerrs...)
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		spec, err := convertService(namespace, p.Services[name], netNames, p.Volumes)
		if err == nil {
			err = convertFileRefs(&spec.Task, p.Services[name], secretNames, configNames)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("services.%s: %w", name, err))
			continue
		}
		st.Services = append(st.Services, spec)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Only networks some service joins matter (compose declares default).
	used := map[string]bool{}
	for _, s := range st.Services {
		for _, n := range s.Networks {
			used[n] = true
		}
	}
	st.Networks = slices.DeleteFunc(st.Networks, func(n Network) bool { return !used[n.Spec.Name] })
	for _, s := range st.Services {
		for _, r := range s.Task.Secrets {
			used["secret "+r.Name] = true
		}
		for _, r := range s.Task.Configs {
			used["config "+r.Name] = true
		}
	}
	st.Secrets = slices.DeleteFunc(secrets, func(o Object) bool { return !used["secret "+o.Name] })
	st.Configs = slices.DeleteFunc(configs, func(o Object) bool { return !used["config "+o.Name] })
	return st, nil
}

func secretObjects(m types.Secrets) map[string]types.FileObjectConfig {
	out := make(map[string]types.FileObjectConfig, len(m))
	for k, v := range m {
		out[k] = types.FileObjectConfig(v)
	}
	return out
}

func configObjects(m types.Configs) map[string]types.FileObjectConfig {
	out := make(map[string]types.FileObjectConfig, len(m))
	for k, v := range m {
		out[k] = types.FileObjectConfig(v)
	}
	return out
}

func convertNetwork(ns, key string, c types.NetworkConfig) (Network, error) {
	name := c.Name
	if name == "" {
		name = key
		if !c.External {
			name = ns + "_" + key
		}
	}
	n := Network{Spec: api.NetworkSpec{Name: name}, External: bool(c.External)}
	if n.External {
		return n, nil
	}
	if !serviceNameRE.MatchString(name) || len(name) > 63 {
		return n, fmt.Errorf("networks.%s: name %q: want 1-63 letters, digits, dashes or underscores", key, name)
	}
	if c.Driver != "" && c.Driver != "overlay" {
		return n, fmt.Errorf("networks.%s.driver %q: Shoal has overlay networks only", key, c.Driver)
	}
	n.Spec.Attachable = c.Attachable
	switch len(c.Ipam.Config) {
	case 0:
	case 1:
		n.Spec.Subnet = c.Ipam.Config[0].Subnet
	default:
		return n, fmt.Errorf("networks.%s.ipam.config: Shoal networks have one subnet", key)
	}
	n.Spec.Labels = withNamespace(c.Labels, ns)
	return n, nil
}

func withNamespace(labels map[string]string, ns string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	maps.Copy(out, labels)
	out[LabelNamespace] = ns
	return out
}

func convertService(ns string, s types.ServiceConfig, netNames map[string]string, volumes types.Volumes) (api.ServiceSpec, error) {
	spec := api.ServiceSpec{
		Name:   ns + "_" + s.Name,
		Labels: map[string]string{LabelNamespace: ns},
		Mode:   api.ModeReplicated,
	}
	if !serviceNameRE.MatchString(spec.Name) || len(spec.Name) > 63 {
		return spec, fmt.Errorf("service name %q: want 1-63 letters, digits, dashes or underscores", spec.Name)
	}
	// Other services of the stack reach it by its name in the file, as
	// docker's network alias (a name that is no DNS label gets none).
	if serviceNameRE.MatchString(s.Name) && len(s.Name) <= 63 {
		spec.Aliases = []string{s.Name}
	}
	if strings.TrimSpace(s.Image) == "" {
		return spec, errors.New("image: required (stack deploy does not build images)")
	}
	t := &spec.Task
	t.Image = s.Image
	if len(s.Command) > 0 {
		t.Command = slices.Clone([]string(s.Command))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
		if v := s.Environment[k]; v != nil {
			t.Env = append(t.Env, k+"="+*v)
		}
	}
	t.User = s.User
	t.Workdir = s.WorkingDir
	if s.StopGracePeriod != nil {
		t.StopGracePeriod = time.Duration(*s.StopGracePeriod)
	}
	if err := convertHealth(t, s.HealthCheck); err != nil {
		return spec, err
	}
	if err := convertRuntime(t, s, volumes); err != nil {
		return spec, err
	}
	for _, key := range slices.Sorted(maps.Keys(s.Networks)) {
		name, ok := netNames[key]
		if !ok {
			return spec, fmt.Errorf("networks: %q is not declared in the top-level networks", key)
		}
		spec.Networks = append(spec.Networks, name)
	}
	if err := convertPorts(&spec, s.Ports); err != nil {
		return spec, err
	}
	if d := s.Deploy; d != nil {
		if err := convertDeploy(&spec, d); err != nil {
			return spec, err
		}
	}
	spec.Labels[LabelNamespace] = ns
	if spec.Mode.IsReplicated() && (s.Deploy == nil || s.Deploy.Replicas == nil) {
		spec.Replicas = 1
	}
	return spec, nil
}

func convertHealth(t *api.TaskSpec, h *types.HealthCheckConfig) error {
	if h == nil {
		return nil
	}
	if h.Disable {
		t.Healthcheck = &api.HealthConfig{Test: []string{"NONE"}}
		return nil
	}
	hc := &api.HealthConfig{Test: slices.Clone([]string(h.Test))}
	if h.Interval != nil {
		hc.Interval = time.Duration(*h.Interval)
	}
	if h.Timeout != nil {
		hc.Timeout = time.Duration(*h.Timeout)
	}
	if h.StartPeriod != nil {
		hc.StartPeriod = time.Duration(*h.StartPeriod)
	}
	if h.Retries != nil {
		if *h.Retries > math.MaxInt32 {
			return fmt.Errorf("healthcheck.retries %d: too many", *h.Retries)
		}
		hc.Retries = int(*h.Retries)
	}
	if err := hc.Validate(); err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	t.Healthcheck = hc
	return nil
}

func convertPorts(spec *api.ServiceSpec, ports []types.ServicePortConfig) error {
	for _, p := range ports {
		var mode api.PublishMode
		switch p.Mode {
		case "", "ingress":
			mode = api.PublishIngress
		case "host":
			mode = api.PublishHost
		default:
			return fmt.Errorf("ports: target %d: mode %q: want ingress or host", p.Target, p.Mode)
		}
		if p.Published == "" {
			return fmt.Errorf("ports: target %d: no published port: Shoal does not pick one (write PUBLISHED:%d)", p.Target, p.Target)
		}
		pub, err := strconv.ParseUint(p.Published, 10, 16)
		if err != nil || pub == 0 {
			return fmt.Errorf("ports: published %q: want a port from 1 to 65535", p.Published)
		}
		if p.Target == 0 || p.Target > 65535 {
			return fmt.Errorf("ports: target %d: want a port from 1 to 65535", p.Target)
		}
		proto := p.Protocol
		if proto == "" {
			proto = api.ProtocolTCP
		}
		if proto != api.ProtocolTCP && proto != api.ProtocolUDP {
			return fmt.Errorf("ports: %d: protocol %q: want tcp or udp", pub, proto)
		}
		spec.Endpoint.Ports = append(spec.Endpoint.Ports, api.PortConfig{Published: uint16(pub), Target: uint16(p.Target), Protocol: proto,
			PublishMode: mode, PublishedIP: p.HostIP})
	}
	check := slices.Clone(spec.Endpoint.Ports)
	if err := api.NormalizePorts(check); err != nil {
		return fmt.Errorf("ports: %w", err)
	}
	return nil
}

func convertDeploy(spec *api.ServiceSpec, d *types.DeployConfig) error {
	switch d.Mode {
	case "", "replicated":
		spec.Mode = api.ModeReplicated
	case "global":
		spec.Mode = api.ModeGlobal
		if d.Replicas != nil {
			return errors.New("deploy.replicas: a global service takes no replica count")
		}
	case "replicated-job":
		spec.Mode = api.ModeReplicatedJob
	case "global-job":
		spec.Mode = api.ModeGlobalJob
		if d.Replicas != nil {
			return errors.New("deploy.replicas: a global job runs once on every node and takes no replica count")
		}
	default:
		return fmt.Errorf("deploy.mode %q: want replicated, global, replicated-job or global-job", d.Mode)
	}
	if d.Replicas != nil {
		if *d.Replicas < 0 {
			return fmt.Errorf("deploy.replicas %d: must not be negative", *d.Replicas)
		}
		spec.Replicas = uint64(*d.Replicas)
	}
	maps.Copy(spec.Labels, d.Labels)
	switch d.EndpointMode {
	case "":
	case "vip", "dnsrr":
		spec.Endpoint.Mode = api.EndpointMode(d.EndpointMode)
	default:
		return fmt.Errorf("deploy.endpoint_mode %q: want vip or dnsrr", d.EndpointMode)
	}
	t := &spec.Task
	t.Placement.Constraints = slices.Clone(d.Placement.Constraints)
	for _, pref := range d.Placement.Preferences {
		p := api.PlacementPreference{Spread: pref.Spread}
		if _, err := p.SpreadLabel(); err != nil {
			return fmt.Errorf("deploy.placement.preferences: %w", err)
		}
		t.Placement.Preferences = append(t.Placement.Preferences, p)
	}
	t.Placement.MaxReplicas = d.Placement.MaxReplicas
	if r := d.Resources.Limits; r != nil {
		t.Resources.Limits = api.ResourceAmounts{NanoCPUs: int64(float64(r.NanoCPUs) * 1e9), MemoryBytes: int64(r.MemoryBytes)}
	}
	if r := d.Resources.Reservations; r != nil {
		t.Resources.Reservations = api.ResourceAmounts{NanoCPUs: int64(float64(r.NanoCPUs) * 1e9), MemoryBytes: int64(r.MemoryBytes)}
	}
	if r := d.RestartPolicy; r != nil {
		switch r.Condition {
		case "":
		case "any", "on-failure", "none":
			t.Restart.Condition = api.RestartCondition(r.Condition)
		default:
			return fmt.Errorf("deploy.restart_policy.condition %q: want any, on-failure or none", r.Condition)
		}
		if r.Delay != nil {
			d := time.Duration(*r.Delay)
			t.Restart.Delay = &d
		}
		if r.MaxAttempts != nil {
			t.Restart.MaxAttempts = *r.MaxAttempts
		}
		if r.Window != nil {
			t.Restart.Window = time.Duration(*r.Window)
		}
	}
	var err error
	if spec.Update, err = convertUpdate("deploy.update_config", d.UpdateConfig); err != nil {
		return err
	}
	if spec.Rollback, err = convertUpdate("deploy.rollback_config", d.RollbackConfig); err != nil {
		return err
	}
	return nil
}

// convertUpdate fills Swarm's defaults for what the file leaves out, as
// docker's stack deploy does.
func convertUpdate(key string, u *types.UpdateConfig) (*api.UpdateConfig, error) {
	if u == nil {
		return nil, nil
	}
	c := api.DefaultUpdateConfig()
	if u.Parallelism != nil {
		c.Parallelism = *u.Parallelism
	}
	c.Delay = time.Duration(u.Delay)
	if u.Monitor != 0 {
		c.Monitor = time.Duration(u.Monitor)
	}
	c.MaxFailureRatio = float64(u.MaxFailureRatio)
	switch u.FailureAction {
	case "":
	case "pause", "continue", "rollback":
		c.FailureAction = api.FailureAction(u.FailureAction)
	default:
		return nil, fmt.Errorf("%s.failure_action %q: want pause, continue or rollback", key, u.FailureAction)
	}
	switch u.Order {
	case "":
	case "stop-first", "start-first":
		c.Order = api.UpdateOrder(u.Order)
	default:
		return nil, fmt.Errorf("%s.order %q: want stop-first or start-first", key, u.Order)
	}
	if c.Delay < 0 || c.Monitor < 0 || c.MaxFailureRatio < 0 || c.MaxFailureRatio > 1 {
		return nil, fmt.Errorf("%s: delay and monitor must not be negative, max_failure_ratio must be from 0 to 1", key)
	}
	return &c, nil
}
