package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

// schedFlags are the placement and job flags of service create and update:
// --placement-pref (create) or --placement-pref-add/-rm (update),
// --replicas-max-per-node and --max-concurrent.
type schedFlags struct {
	set                       func(name string) bool
	prefs, prefAdd, prefRm    []string
	maxPerNode, maxConcurrent string
}

func (f *schedFlags) register(fs *pflag.FlagSet, update bool) {
	f.set = fs.Changed
	if update {
		fs.StringArrayVar(&f.prefAdd, "placement-pref-add", nil, "add a placement preference, spread=node.labels.NAME (repeatable)")
		fs.StringArrayVar(&f.prefRm, "placement-pref-rm", nil, "remove a placement preference, spread=node.labels.NAME (repeatable)")
	} else {
		fs.StringArrayVar(&f.prefs, "placement-pref", nil,
			"spread tasks evenly over a node label's values, spread=node.labels.NAME (repeatable: nested, the first first)")
	}
	fs.StringVar(&f.maxPerNode, "replicas-max-per-node", "", "at most this many tasks of the service on one node (0: no limit)")
	fs.StringVar(&f.maxConcurrent, "max-concurrent", "", "a replicated-job's tasks run at once (default: all its --replicas)")
}

// apply changes spec as the flags say.
func (f *schedFlags) apply(spec *api.ServiceSpec) error {
	pl := &spec.Task.Placement
	for _, s := range f.prefRm {
		p, err := api.ParsePlacementPreference(s)
		if err != nil {
			return fmt.Errorf("--placement-pref-rm: %w", err)
		}
		if !slices.Contains(pl.Preferences, p) {
			return fmt.Errorf("--placement-pref-rm %q: the service has no such preference", s)
		}
		pl.Preferences = slices.DeleteFunc(pl.Preferences, func(x api.PlacementPreference) bool { return x == p })
		if len(pl.Preferences) == 0 {
			pl.Preferences = nil
		}
	}
	for _, c := range []struct {
		flag string
		vals []string
	}{{"--placement-pref", f.prefs}, {"--placement-pref-add", f.prefAdd}} {
		for _, s := range c.vals {
			p, err := api.ParsePlacementPreference(s)
			if err != nil {
				return fmt.Errorf("%s: %w", c.flag, err)
			}
			pl.Preferences = append(pl.Preferences, p)
		}
	}
	if f.set("replicas-max-per-node") {
		n, err := strconv.ParseUint(f.maxPerNode, 10, 64)
		if err != nil {
			return fmt.Errorf("--replicas-max-per-node %q: want a number of tasks, 0 for no limit", f.maxPerNode)
		}
		if n > 0 && spec.Mode.IsGlobal() {
			return fmt.Errorf("--replicas-max-per-node: a %s service runs one task per node already", spec.Mode)
		}
		pl.MaxReplicas = n
	}
	if len(pl.Preferences) > 0 && spec.Mode.IsGlobal() {
		return fmt.Errorf("--placement-pref: a %s service runs one task on every node and spreads nothing", spec.Mode)
	}
	if f.set("max-concurrent") {
		if spec.Mode != api.ModeReplicatedJob {
			return fmt.Errorf("--max-concurrent: only a replicated-job takes it (mode is %s)", spec.Mode)
		}
		n, err := strconv.ParseUint(f.maxConcurrent, 10, 64)
		if err != nil {
			return fmt.Errorf("--max-concurrent %q: want a number of tasks", f.maxConcurrent)
		}
		spec.MaxConcurrent = n
	}
	if spec.Mode.IsJob() && spec.Task.Restart.Condition == api.RestartAny {
		return errors.New("--restart-condition any: a job's tasks run to completion; want on-failure (the default for jobs) or none")
	}
	return nil
}

// replicasText is the REPLICAS column of service ls: running/desired, and
// for a job running/at-once (completed/completions completed).
func replicasText(s api.ServiceView) string {
	if !s.Spec.Mode.IsJob() {
		return fmt.Sprintf("%d/%d", s.Running, s.Desired)
	}
	atOnce := s.Desired
	if m := s.Spec.MaxConcurrent; s.Spec.Mode == api.ModeReplicatedJob && m > 0 && m < atOnce {
		atOnce = m
	}
	return fmt.Sprintf("%d/%d (%d/%d completed)", s.Running, atOnce, s.Completed, s.Desired)
}

// jobProgress is converge's progress line for a job, and whether it is
// done: every completion wanted is there.
func jobProgress(v api.ServiceView) (string, bool) {
	return fmt.Sprintf("%d/%d tasks completed (%d running)", v.Completed, v.Desired, v.Running),
		v.Completed == v.Desired && (v.Spec.Mode != api.ModeGlobalJob || v.Desired > 0)
}
