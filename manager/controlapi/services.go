package controlapi

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/httpserve"
	"github.com/shoal-dev/shoal/store"
)

// ConstraintChecker validates placement constraints at create time.
type ConstraintChecker func(expr string) error

// serviceName is swarmkit's rule for service and network names: letters and
// digits, with dashes or underscores between them (a stack's services are
// STACK_NAME), at most 63 characters (checked apart).
var serviceName = regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`)

func validName(s string) bool { return len(s) <= 63 && serviceName.MatchString(s) }

// validateSpec fills defaults and refuses what cannot run, naming the field.
func (s *Server) validateSpec(spec *api.ServiceSpec) error {
	if err := checkServiceLimits(spec); err != nil {
		return err
	}
	if !validName(spec.Name) {
		return badRequest("service name %q: want 1-63 letters, digits, dashes or underscores, starting and ending with a letter or digit", spec.Name)
	}
	for _, alias := range spec.Aliases {
		if !validName(alias) {
			return badRequest("alias %q: want 1-63 letters, digits, dashes or underscores, starting and ending with a letter or digit", alias)
		}
	}
	switch spec.Mode {
	case "":
		spec.Mode = api.ModeReplicated
	case api.ModeReplicated, api.ModeGlobal, api.ModeReplicatedJob, api.ModeGlobalJob:
	default:
		return badRequest("mode %q: want replicated, global, replicated-job or global-job", spec.Mode)
	}
	if spec.Mode.IsGlobal() && spec.Replicas != 0 {
		return badRequest("replicas: a global service runs one task per node and takes no replica count")
	}
	if spec.Replicas > 10000 {
		return badRequest("replicas %d: at most 10000", spec.Replicas)
	}
	if err := validateJob(spec); err != nil {
		return err
	}
	if err := validatePlacement(spec); err != nil {
		return err
	}
	t := &spec.Task
	if strings.TrimSpace(t.Image) == "" {
		return badRequest("image: required")
	}
	switch t.Restart.Condition {
	case "":
		t.Restart.Condition = api.RestartAny
	case api.RestartAny, api.RestartOnFailure, api.RestartNone:
	default:
		return badRequest("restart condition %q: want any, on-failure or none", t.Restart.Condition)
	}
	if (t.Restart.Delay != nil && *t.Restart.Delay < 0) || t.Restart.Window < 0 || t.StopGracePeriod < 0 {
		return badRequest("restart delay, restart window and stop grace period must not be negative")
	}
	for name, v := range map[string]int64{
		"reserve-cpu": t.Resources.Reservations.NanoCPUs, "reserve-memory": t.Resources.Reservations.MemoryBytes,
		"limit-cpu": t.Resources.Limits.NanoCPUs, "limit-memory": t.Resources.Limits.MemoryBytes,
	} {
		if v < 0 {
			return badRequest("%s: must not be negative", name)
		}
	}
	if l := t.Resources.Limits.MemoryBytes; l != 0 && l < 4<<20 {
		return badRequest("limit-memory %d bytes: at least 4 MiB", l)
	}
	for _, e := range t.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return badRequest("env %q: want KEY=VALUE", e)
		}
	}
	if err := t.Healthcheck.Validate(); err != nil {
		return badRequest("%v", err)
	}
	if err := t.ValidateRuntime(); err != nil {
		return badRequest("%v", err)
	}
	for _, c := range t.Placement.Constraints {
		if err := s.cfg.CheckConstraint(c); err != nil {
			return badRequest("constraint %q: %v", c, err)
		}
	}
	for _, c := range []struct {
		name string
		cfg  **api.UpdateConfig
	}{{"update", &spec.Update}, {"rollback", &spec.Rollback}} {
		if *c.cfg == nil {
			d := api.DefaultUpdateConfig()
			*c.cfg = &d
		}
		if err := validateUpdateConfig(c.name, *c.cfg); err != nil {
			return err
		}
	}
	return validateEndpoint(spec)
}

// validateUpdateConfig checks an update or rollback config, filling Swarm's
// defaults for an empty order or failure action.
func validateUpdateConfig(name string, c *api.UpdateConfig) error {
	switch c.Order {
	case "":
		c.Order = api.OrderStopFirst
	case api.OrderStopFirst, api.OrderStartFirst:
	default:
		return badRequest("%s order %q: want stop-first or start-first", name, c.Order)
	}
	switch c.FailureAction {
	case "":
		c.FailureAction = api.ActionPause
	case api.ActionPause, api.ActionContinue:
	case api.ActionRollback:
		if name == "rollback" {
			return badRequest("rollback failure action %q: want pause or continue", c.FailureAction)
		}
	default:
		return badRequest("%s failure action %q: want pause, continue or rollback", name, c.FailureAction)
	}
	if c.Delay < 0 || c.Monitor < 0 {
		return badRequest("%s delay and monitor must not be negative", name)
	}
	if c.MaxFailureRatio < 0 || c.MaxFailureRatio > 1 || c.MaxFailureRatio != c.MaxFailureRatio {
		return badRequest("%s max failure ratio %v: want a fraction from 0 to 1", name, c.MaxFailureRatio)
	}
	return nil
}

func (s *Server) serviceView(tx store.ReadTx, svc *api.Service) api.ServiceView {
	v := api.ServiceView{Service: *svc}
	if svc.Spec.Mode.IsJob() {
		jobCounts(&v, tx.TasksOfService(svc.ID))
		return v
	}
	if svc.Spec.Mode == api.ModeReplicated {
		v.Desired = svc.Spec.Replicas
	}
	for _, t := range tx.TasksOfService(svc.ID) {
		if t.DesiredState != api.TaskRunning {
			continue
		}
		if svc.Spec.Mode == api.ModeGlobal {
			v.Desired++
		}
		if t.Status.State == api.TaskRunning {
			v.Running++
		}
	}
	return v
}

func findService(tx store.ReadTx, ref string) (*api.Service, error) {
	return one("service", ref, tx.FindServices(ref), func(o *api.Service) string { return o.ID })
}

func (s *Server) createService(w http.ResponseWriter, r *http.Request) {
	var spec api.ServiceSpec
	if !decode(w, r, &spec, false) {
		return
	}
	if err := s.validateSpec(&spec); err != nil {
		writeStoreError(w, "create service", err)
		return
	}
	svc := &api.Service{ID: api.NewID(), Spec: spec}
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		for _, other := range tx.Services() {
			if other.Spec.Name == spec.Name {
				return badRequest("a service named %q exists already (%s)", spec.Name, other.ID)
			}
		}
		svc.Spec = spec
		if err := resolveNetworks(tx, &svc.Spec, ""); err != nil {
			return err
		}
		if err := resolveFileRefs(tx, &svc.Spec.Task); err != nil {
			return err
		}
		return tx.PutService(svc)
	})
	if err != nil {
		writeStoreError(w, "create service", err)
		return
	}
	s.log.Info("service created", "service", svc.ID, "name", spec.Name, "mode", spec.Mode, "replicas", spec.Replicas)
	s.answerService(w, svc.ID)
}

func (s *Server) answerService(w http.ResponseWriter, id string) {
	var v api.ServiceView
	var found bool
	s.cfg.Store.View(func(tx store.ReadTx) {
		if svc := tx.Service(id); svc != nil {
			v, found = s.serviceView(tx, svc), true
		}
	})
	if !found {
		writeError(w, http.StatusNotFound, "service %s is gone", id)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	out := []api.ServiceView{}
	s.cfg.Store.View(func(tx store.ReadTx) {
		for _, svc := range tx.Services() {
			out = append(out, s.serviceView(tx, svc))
		}
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) {
	var v api.ServiceView
	var err error
	s.cfg.Store.View(func(tx store.ReadTx) {
		var svc *api.Service
		if svc, err = findService(tx, r.PathValue("ref")); err == nil {
			v = s.serviceView(tx, svc)
		}
	})
	if err != nil {
		writeStoreError(w, "inspect service", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) updateService(w http.ResponseWriter, r *http.Request) {
	var u api.ServiceUpdate
	if !decode(w, r, &u, false) {
		return
	}
	if u.Rollback && (u.Spec != nil || u.Replicas != nil) {
		writeError(w, http.StatusBadRequest, "rollback takes no spec or replicas")
		return
	}
	if u.Spec != nil {
		if err := s.validateSpec(u.Spec); err != nil {
			writeStoreError(w, "update service", err)
			return
		}
	}
	var id string
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		svc, err := findService(tx, r.PathValue("ref"))
		if err != nil {
			return err
		}
		id = svc.ID
		if u.Version != 0 && u.Version != svc.Meta.Version {
			return fmt.Errorf("service %s changed since version %d (now %d): read it again: %w", svc.Spec.Name, u.Version, svc.Meta.Version, store.ErrConflict)
		}
		if u.Rollback {
			if svc.Spec.Mode.IsJob() {
				return badRequest("service %s is a job: jobs have no rollback; update it to run it again", svc.Spec.Name)
			}
			if svc.PreviousSpec == nil {
				return badRequest("service %s has no previous spec to roll back to", svc.Spec.Name)
			}
			cur := svc.Spec
			svc.Spec, svc.PreviousSpec = *svc.PreviousSpec, &cur
			svc.UpdateStatus = &api.UpdateStatus{State: api.UpdateRollbackStarted, Message: "manually requested rollback", StartedAt: s.cfg.Clock.Now()}
			return tx.PutService(svc)
		}
		next := svc.Spec
		if u.Spec != nil {
			if u.Spec.Name != svc.Spec.Name {
				return badRequest("service name cannot change (%q to %q)", svc.Spec.Name, u.Spec.Name)
			}
			if u.Spec.Mode != svc.Spec.Mode {
				return badRequest("service mode cannot change (%s to %s)", svc.Spec.Mode, u.Spec.Mode)
			}
			next = *u.Spec
			if err := resolveNetworks(tx, &next, svc.ID); err != nil {
				return err
			}
			if err := resolveFileRefs(tx, &next.Task); err != nil {
				return err
			}
		}
		if u.Replicas != nil {
			if !svc.Spec.Mode.IsReplicated() {
				return badRequest("service %s is %s: it cannot be scaled", svc.Spec.Name, svc.Spec.Mode)
			}
			if *u.Replicas > 10000 {
				return badRequest("replicas %d: at most 10000", *u.Replicas)
			}
			next.Replicas = *u.Replicas
		}
		prev := svc.Spec
		svc.PreviousSpec = &prev
		svc.Spec = next
		// As Swarm: the orchestrator starts a new update (or none when no
		// task is outdated); a paused one resumes with its count reset.
		svc.UpdateStatus = nil
		if svc.Spec.Mode.IsJob() {
			// As Swarm: every update of a job runs it again.
			svc.JobIteration++
		}
		return tx.PutService(svc)
	})
	if err != nil {
		writeStoreError(w, "update service", err)
		return
	}
	s.log.Info("service updated", "service", id)
	s.answerService(w, id)
}

func (s *Server) removeService(w http.ResponseWriter, r *http.Request) {
	var removed *api.Service
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		svc, err := findService(tx, r.PathValue("ref"))
		if err != nil {
			return err
		}
		removed = svc
		return tx.DeleteService(svc.ID)
	})
	if err != nil {
		writeStoreError(w, "remove service", err)
		return
	}
	// The orchestrator shuts its tasks down and deletes them.
	s.log.Info("service removed", "service", removed.ID, "name", removed.Spec.Name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var out []*api.Task
	var err error
	s.cfg.Store.View(func(tx store.ReadTx) {
		var serviceID, nodeID string
		if ref := q.Get("service"); ref != "" {
			svc, ferr := findService(tx, ref)
			if ferr != nil {
				err = ferr
				return
			}
			serviceID = svc.ID
		}
		if ref := q.Get("node"); ref != "" {
			n, ferr := findNode(tx, ref)
			if ferr != nil {
				err = ferr
				return
			}
			nodeID = n.ID
		}
		switch {
		case serviceID != "":
			out = tx.TasksOfService(serviceID)
		case nodeID != "":
			out = tx.TasksOnNode(nodeID)
		default:
			out = tx.Tasks()
		}
		out = slices.DeleteFunc(out, func(t *api.Task) bool {
			return (serviceID != "" && t.ServiceID != serviceID) || (nodeID != "" && t.NodeID != nodeID)
		})
	})
	if err != nil {
		writeStoreError(w, "list tasks", err)
		return
	}
	// By service, slot (or node for global), then newest first, as docker service ps.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ServiceName != b.ServiceName {
			return a.ServiceName < b.ServiceName
		}
		if a.Slot != b.Slot {
			return a.Slot < b.Slot
		}
		if a.Slot == 0 && a.NodeID != b.NodeID {
			return a.NodeID < b.NodeID
		}
		return a.Meta.CreatedAt.After(b.Meta.CreatedAt)
	})
	if out == nil {
		out = []*api.Task{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) assignments(w http.ResponseWriter, r *http.Request) {
	since, err := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	if err != nil && r.URL.Query().Get("since") != "" {
		writeError(w, http.StatusBadRequest, "since %q: want an index", r.URL.Query().Get("since"))
		return
	}
	// A long poll: it may wait longer than the server's deadlines allow.
	httpserve.Extend(w, 2*forwardTimeout)
	out, err := s.cfg.Dispatcher.Assignments(r.Context(), callerOf(r).NodeID, since, r.URL.Query().Get("netsum"))
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		writeStoreError(w, "assignments", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) reportStatus(w http.ResponseWriter, r *http.Request) {
	var updates []api.TaskStatusUpdate
	if !decode(w, r, &updates, false) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), raftChangeTimeout)
	defer cancel()
	if err := s.cfg.Dispatcher.ReportStatus(ctx, callerOf(r).NodeID, updates); err != nil {
		writeStoreError(w, "task status", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
