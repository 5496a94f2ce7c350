package api

// Jobs (ModeReplicatedJob, ModeGlobalJob) run their tasks to completion, as
// Swarm's: a task that completes is not restarted, one that fails is
// retried under the restart policy (on-failure unless said). A replicated
// job wants Replicas completions with at most MaxConcurrent tasks at once
// (0: all); a global job one completion on every eligible node. Every
// update of a job's service (service update, --force, scale) bumps the
// service's JobIteration: the tasks of earlier iterations are stopped and
// kept as history, and the job runs again.

// IsJob reports whether the mode runs tasks to completion.
func (m ServiceMode) IsJob() bool { return m == ModeReplicatedJob || m == ModeGlobalJob }

// IsGlobal reports whether the mode runs a task on every eligible node.
func (m ServiceMode) IsGlobal() bool { return m == ModeGlobal || m == ModeGlobalJob }

// IsReplicated reports whether the mode takes a replica count.
func (m ServiceMode) IsReplicated() bool { return m == ModeReplicated || m == ModeReplicatedJob }
