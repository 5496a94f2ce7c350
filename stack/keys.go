package stack

import (
	"strings"

	"github.com/compose-spec/compose-go/v2/tree"
)

// supported are the compose keys Convert maps (fail-closed: any other key
// is either one Swarm ignores too, or an error naming it). "*" is any
// mapping key, "[]" a list item.
var supported = paths(
	"version", "name",
	"services.*.image",
	"services.*.command",
	"services.*.entrypoint",
	"services.*.environment.*",
	"services.*.env_file",
	"services.*.env_file.[].path", "services.*.env_file.[].required", "services.*.env_file.[].format",
	"services.*.ports.[].target", "services.*.ports.[].published", "services.*.ports.[].protocol",
	"services.*.ports.[].mode", "services.*.ports.[].name", "services.*.ports.[].app_protocol",
	"services.*.ports.[].host_ip",
	"services.*.networks.*",
	"services.*.deploy.mode",
	"services.*.deploy.replicas",
	"services.*.deploy.labels.*",
	"services.*.deploy.endpoint_mode",
	"services.*.deploy.placement.constraints",
	"services.*.deploy.placement.preferences.[].spread",
	"services.*.deploy.placement.max_replicas_per_node",
	"services.*.deploy.resources.limits.cpus", "services.*.deploy.resources.limits.memory",
	"services.*.deploy.resources.reservations.cpus", "services.*.deploy.resources.reservations.memory",
	"services.*.deploy.restart_policy.condition", "services.*.deploy.restart_policy.delay",
	"services.*.deploy.restart_policy.max_attempts", "services.*.deploy.restart_policy.window",
	"services.*.deploy.update_config.*", "services.*.deploy.rollback_config.*",
	"services.*.healthcheck.test", "services.*.healthcheck.interval", "services.*.healthcheck.timeout",
	"services.*.healthcheck.retries", "services.*.healthcheck.start_period", "services.*.healthcheck.disable",
	"services.*.stop_grace_period",
	"services.*.user",
	"services.*.hostname", "services.*.group_add", "services.*.read_only", "services.*.init",
	"services.*.cap_add", "services.*.cap_drop", "services.*.sysctls", "services.*.sysctls.*",
	"services.*.ulimits.*", "services.*.ulimits.*.soft", "services.*.ulimits.*.hard", "services.*.ulimits.*.single",
	"services.*.stop_signal", "services.*.dns", "services.*.dns_search", "services.*.dns_opt",
	"services.*.extra_hosts", "services.*.extra_hosts.*", "services.*.tty", "services.*.tmpfs",
	"services.*.volumes.[].type", "services.*.volumes.[].source", "services.*.volumes.[].target",
	"services.*.volumes.[].read_only", "services.*.volumes.[].volume.nocopy",
	"services.*.volumes.[].tmpfs.size", "services.*.volumes.[].tmpfs.mode",
	"services.*.volumes.[].bind.create_host_path",
	"volumes.*.name", "volumes.*.external", "volumes.*.driver",
	"services.*.secrets.[].source", "services.*.secrets.[].target", "services.*.secrets.[].uid",
	"services.*.secrets.[].gid", "services.*.secrets.[].mode",
	"services.*.configs.[].source", "services.*.configs.[].target", "services.*.configs.[].uid",
	"services.*.configs.[].gid", "services.*.configs.[].mode",
	"secrets.*.name", "secrets.*.file", "secrets.*.environment", "secrets.*.external", "secrets.*.labels.*",
	"configs.*.name", "configs.*.file", "configs.*.environment", "configs.*.content", "configs.*.external", "configs.*.labels.*",
	"services.*.working_dir",
	"networks.*.name", "networks.*.external", "networks.*.driver", "networks.*.labels.*",
	"networks.*.attachable", "networks.*.ipam.config.[].subnet",
)

// ignored are the service keys Swarm's stack deploy ignores too: they
// make a warning, not an error.
var ignored = map[string]bool{
	"build": true, "depends_on": true, "container_name": true, "links": true, "external_links": true,
	"restart": true, "cgroup_parent": true, "cgroupns_mode": true, "devices": true, "domainname": true,
	"ipc": true, "mac_address": true, "network_mode": true, "pid": true, "privileged": true,
	"security_opt": true, "shm_size": true, "userns_mode": true, "expose": true, "profiles": true,
	"pull_policy": true, "scale": true, "develop": true, "attach": true, "uts": true,
}

func paths(ps ...string) []tree.Path {
	out := make([]tree.Path, len(ps))
	for i, p := range ps {
		out[i] = tree.Path(p)
	}
	return out
}

// ignoredKey reports whether p is a service key Swarm ignores, and its name.
func ignoredKey(p tree.Path) (string, bool) {
	parts := p.Parts()
	if len(parts) == 3 && parts[0] == "services" && ignored[parts[2]] {
		return parts[2], true
	}
	// the network_mode/build of an extended service ends up the same way
	if len(parts) > 3 && parts[0] == "services" && ignored[parts[2]] {
		return parts[2], true
	}
	return strings.Join(parts, "."), false
}
