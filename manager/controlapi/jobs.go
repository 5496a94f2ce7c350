package controlapi

import "github.com/shoal-dev/shoal/api"

// maxPreferences bounds a service's placement preferences (each is a level
// of the scheduler's spread tree).
const maxPreferences = 8

// validatePlacement checks placement preferences and the cap of tasks per
// node; the constraints are checked with the rest of the spec.
func validatePlacement(spec *api.ServiceSpec) error {
	pl := &spec.Task.Placement
	if len(pl.Preferences) > maxPreferences {
		return badRequest("placement preferences: %d, at most %d", len(pl.Preferences), maxPreferences)
	}
	for _, p := range pl.Preferences {
		if _, err := p.SpreadLabel(); err != nil {
			return badRequest("placement preference: %v", err)
		}
	}
	if spec.Mode.IsGlobal() {
		if len(pl.Preferences) > 0 {
			return badRequest("placement preferences: a %s service runs one task on every node and spreads nothing", spec.Mode)
		}
		if pl.MaxReplicas > 0 {
			return badRequest("max replicas per node: a %s service runs one task per node already", spec.Mode)
		}
	}
	return nil
}

// validateJob checks what is particular to jobs and fills their restart
// condition: on-failure, as Swarm (a job's task that completes is done).
func validateJob(spec *api.ServiceSpec) error {
	if spec.MaxConcurrent > 0 && spec.Mode != api.ModeReplicatedJob {
		return badRequest("max concurrent: only a replicated-job takes it (mode is %s)", spec.Mode)
	}
	if !spec.Mode.IsJob() {
		return nil
	}
	switch spec.Task.Restart.Condition {
	case "":
		spec.Task.Restart.Condition = api.RestartOnFailure
	case api.RestartAny:
		return badRequest("restart condition any: a job's tasks run to completion and are not restarted once complete; want on-failure (the default for jobs) or none")
	}
	return nil
}

// jobCounts fills a job's counts in its view: Desired completions, tasks of
// the current run Running and Completed. Earlier runs' tasks do not count.
func jobCounts(v *api.ServiceView, tasks []*api.Task) {
	svc := &v.Service
	if svc.Spec.Mode == api.ModeReplicatedJob {
		v.Desired = svc.Spec.Replicas
	}
	for _, t := range tasks {
		if t.JobIteration != svc.JobIteration {
			continue
		}
		holds := t.DesiredState == api.TaskRunning || t.DesiredState == api.TaskComplete
		if !holds {
			continue
		}
		if svc.Spec.Mode == api.ModeGlobalJob {
			v.Desired++
		}
		switch t.Status.State {
		case api.TaskRunning:
			v.Running++
		case api.TaskComplete:
			v.Completed++
		}
	}
}
