package controlapi

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/shoal-dev/shoal/api"
)

// Limits on what one object may carry. Every task copies its service's spec
// and every write goes through raft and into every snapshot, so an unbounded
// field grows the log, the snapshots and each manager's memory (label adds
// once grew one node to 11.7 MB and raft.db to 197 MB). The store refuses any
// object over store.MaxObjectBytes as a last guard; these limits come first
// and name the field.
const (
	maxLabels      = 64
	maxLabelKey    = 128
	maxLabelValue  = 1024
	maxEnv         = 256
	maxEnvEntry    = 16 << 10
	maxArgs        = 256
	maxArg         = 16 << 10
	maxConstraints = 32
	maxConstraint  = 256
	maxImage       = 512
	maxPathLike    = 1024 // user, workdir
	maxPorts       = 128
	maxNetworks    = 32
	// maxSpecBytes bounds a whole service spec as JSON: a 10,000-replica
	// service then holds at most ~640 MB of task specs, not gigabytes.
	maxSpecBytes = 64 << 10
)

// checkLabels refuses too many labels, empty keys and long keys or values.
func checkLabels(field string, labels map[string]string) error {
	if len(labels) > maxLabels {
		return badRequest("%s: %d labels, at most %d", field, len(labels), maxLabels)
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same label is named first every time
	for _, k := range keys {
		switch {
		case k == "":
			return badRequest("%s: empty label key", field)
		case len(k) > maxLabelKey:
			return badRequest("%s: key %s is %d bytes, at most %d", field, clip(k), len(k), maxLabelKey)
		case len(labels[k]) > maxLabelValue:
			return badRequest("%s: value of %s is %d bytes, at most %d", field, clip(k), len(labels[k]), maxLabelValue)
		}
	}
	return nil
}

// checkList refuses a list with more than maxCount items or an item longer
// than maxLen bytes.
func checkList(field string, items []string, maxCount, maxLen int) error {
	if len(items) > maxCount {
		return badRequest("%s: %d entries, at most %d", field, len(items), maxCount)
	}
	for i, s := range items {
		if len(s) > maxLen {
			return badRequest("%s[%d] %s is %d bytes, at most %d", field, i, clip(s), len(s), maxLen)
		}
	}
	return nil
}

func checkLen(field, s string, maxLen int) error {
	if len(s) > maxLen {
		return badRequest("%s %s is %d bytes, at most %d", field, clip(s), len(s), maxLen)
	}
	return nil
}

// checkServiceLimits refuses a service spec over any limit, naming the field.
func checkServiceLimits(spec *api.ServiceSpec) error {
	t := &spec.Task
	var healthTest []string
	if t.Healthcheck != nil {
		healthTest = t.Healthcheck.Test
	}
	checks := []error{
		checkLabels("labels", spec.Labels),
		checkLen("image", t.Image, maxImage),
		checkLen("user", t.User, maxPathLike),
		checkLen("workdir", t.Workdir, maxPathLike),
		checkList("env", t.Env, maxEnv, maxEnvEntry),
		checkList("command", t.Command, maxArgs, maxArg),
		checkList("health test", healthTest, maxArgs, maxArg),
		checkList("constraints", t.Placement.Constraints, maxConstraints, maxConstraint),
		checkList("networks", spec.Networks, maxNetworks, maxLabelKey),
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	if n := len(spec.Endpoint.Ports); n > maxPorts {
		return badRequest("ports: %d published ports, at most %d", n, maxPorts)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encode spec: %w", err)
	}
	if len(b) > maxSpecBytes {
		return badRequest("spec: %d bytes as JSON, at most %d", len(b), maxSpecBytes)
	}
	return nil
}

// clip quotes s, cut to a length an error message can carry.
func clip(s string) string {
	const keep = 32
	if len(s) <= keep {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...", s[:keep])
}
