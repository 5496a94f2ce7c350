package controlapi

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// Secret and config calls, and the references of service specs to them.
// Secrets never leave a manager with their data except to a node that runs a
// task referencing them (the dispatcher); configs show theirs on inspect.

func (s *Server) routeSecrets() {
	s.route("POST /v1/secrets", managers, true, s.createSecret)
	s.route("GET /v1/secrets", managers, false, s.listSecrets)
	s.route("GET /v1/secrets/{ref}", managers, false, s.getSecret)
	s.route("DELETE /v1/secrets/{ref}", managers, true, s.removeSecret)
	s.route("POST /v1/configs", managers, true, s.createConfig)
	s.route("GET /v1/configs", managers, false, s.listConfigs)
	s.route("GET /v1/configs/{ref}", managers, false, s.getConfig)
	s.route("DELETE /v1/configs/{ref}", managers, true, s.removeConfig)
}

func findSecret(tx store.ReadTx, ref string) (*api.Secret, error) {
	return one("secret", ref, tx.FindSecrets(ref), func(o *api.Secret) string { return o.ID })
}

func findConfig(tx store.ReadTx, ref string) (*api.Config, error) {
	return one("config", ref, tx.FindConfigs(ref), func(o *api.Config) string { return o.ID })
}

// checkSecretSpec validates what secret and config creates share.
func checkSecretSpec(kind, name string, labels map[string]string, data []byte) error {
	if err := api.ValidateSecretName(kind, name); err != nil {
		return badRequest("%v", err)
	}
	if err := checkLabels("labels", labels); err != nil {
		return err
	}
	if err := api.ValidateSecretData(kind, name, data); err != nil {
		return badRequest("%v", err)
	}
	return nil
}

func (s *Server) createSecret(w http.ResponseWriter, r *http.Request) {
	var spec api.SecretSpec
	if !decode(w, r, &spec, false) {
		return
	}
	if err := checkSecretSpec("secret", spec.Name, spec.Labels, spec.Data); err != nil {
		writeStoreError(w, "create secret", err)
		return
	}
	sec := &api.Secret{ID: api.NewID(), Spec: spec}
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		for _, o := range tx.Secrets() {
			if o.Spec.Name == spec.Name {
				return badRequest("a secret named %q exists already (%s)", spec.Name, o.ID)
			}
		}
		return tx.PutSecret(sec)
	})
	if err != nil {
		writeStoreError(w, "create secret", err)
		return
	}
	s.log.Info("secret created", "secret", sec.ID, "name", spec.Name)
	var out *api.Secret
	s.cfg.Store.View(func(tx store.ReadTx) { out = tx.Secret(sec.ID) })
	if out == nil {
		writeError(w, http.StatusNotFound, "secret %s is gone", sec.ID)
		return
	}
	writeJSON(w, http.StatusOK, out.Redacted())
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	out := []*api.Secret{}
	s.cfg.Store.View(func(tx store.ReadTx) {
		for _, sec := range tx.Secrets() {
			out = append(out, sec.Redacted())
		}
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) {
	var sec *api.Secret
	var err error
	s.cfg.Store.View(func(tx store.ReadTx) { sec, err = findSecret(tx, r.PathValue("ref")) })
	if err != nil {
		writeStoreError(w, "inspect secret", err)
		return
	}
	writeJSON(w, http.StatusOK, sec.Redacted())
}

// usedBy names the services whose spec references an object, and the
// services of live tasks that still do (an update that dropped it is still
// rolling), sorted.
func usedBy(tx store.ReadTx, uses func(*api.TaskSpec) bool) []string {
	var names []string
	for _, svc := range tx.Services() {
		if uses(&svc.Spec.Task) {
			names = append(names, svc.Spec.Name)
		}
	}
	for _, t := range tx.Tasks() {
		if !t.Status.State.Terminal() && t.DesiredState == api.TaskRunning && uses(&t.Spec) && !slices.Contains(names, t.ServiceName) {
			names = append(names, t.ServiceName)
		}
	}
	slices.Sort(names)
	return names
}

func (s *Server) removeSecret(w http.ResponseWriter, r *http.Request) {
	var removed *api.Secret
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		sec, err := findSecret(tx, r.PathValue("ref"))
		if err != nil {
			return err
		}
		removed = sec
		if names := usedBy(tx, func(t *api.TaskSpec) bool {
			return slices.ContainsFunc(t.Secrets, func(ref api.SecretReference) bool { return ref.ID == sec.ID })
		}); len(names) > 0 {
			return badRequest("secret %s is in use by service %s", sec.Spec.Name, strings.Join(names, ", "))
		}
		return tx.DeleteSecret(sec.ID)
	})
	if err != nil {
		writeStoreError(w, "remove secret", err)
		return
	}
	s.log.Info("secret removed", "secret", removed.ID, "name", removed.Spec.Name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) createConfig(w http.ResponseWriter, r *http.Request) {
	var spec api.ConfigSpec
	if !decode(w, r, &spec, false) {
		return
	}
	if err := checkSecretSpec("config", spec.Name, spec.Labels, spec.Data); err != nil {
		writeStoreError(w, "create config", err)
		return
	}
	cfg := &api.Config{ID: api.NewID(), Spec: spec}
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		for _, o := range tx.Configs() {
			if o.Spec.Name == spec.Name {
				return badRequest("a config named %q exists already (%s)", spec.Name, o.ID)
			}
		}
		return tx.PutConfig(cfg)
	})
	if err != nil {
		writeStoreError(w, "create config", err)
		return
	}
	s.log.Info("config created", "config", cfg.ID, "name", spec.Name)
	var out *api.Config
	s.cfg.Store.View(func(tx store.ReadTx) { out = tx.Config(cfg.ID) })
	if out == nil {
		writeError(w, http.StatusNotFound, "config %s is gone", cfg.ID)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listConfigs(w http.ResponseWriter, r *http.Request) {
	out := []*api.Config{}
	s.cfg.Store.View(func(tx store.ReadTx) { out = append(out, tx.Configs()...) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	var c *api.Config
	var err error
	s.cfg.Store.View(func(tx store.ReadTx) { c, err = findConfig(tx, r.PathValue("ref")) })
	if err != nil {
		writeStoreError(w, "inspect config", err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) removeConfig(w http.ResponseWriter, r *http.Request) {
	var removed *api.Config
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		c, err := findConfig(tx, r.PathValue("ref"))
		if err != nil {
			return err
		}
		removed = c
		if names := usedBy(tx, func(t *api.TaskSpec) bool {
			return slices.ContainsFunc(t.Configs, func(ref api.ConfigReference) bool { return ref.ID == c.ID })
		}); len(names) > 0 {
			return badRequest("config %s is in use by service %s", c.Spec.Name, strings.Join(names, ", "))
		}
		return tx.DeleteConfig(c.ID)
	})
	if err != nil {
		writeStoreError(w, "remove config", err)
		return
	}
	s.log.Info("config removed", "config", removed.ID, "name", removed.Spec.Name)
	w.WriteHeader(http.StatusNoContent)
}

// maxFileRefs bounds the secrets and the configs of one service.
const maxFileRefs = 64

// resolveFileRefs resolves the secret and config references of a task spec
// by name or ID, stores both, fills the defaults (target: the name, under
// /run/secrets for secrets and / for configs; uid and gid "0"; mode 0444)
// and refuses unknown names, bad targets, owners and modes, and two files
// at one path.
func resolveFileRefs(tx store.ReadTx, t *api.TaskSpec) error {
	if len(t.Secrets) > maxFileRefs || len(t.Configs) > maxFileRefs {
		return badRequest("secrets and configs: at most %d of each per service", maxFileRefs)
	}
	paths := map[string]string{}
	claim := func(kind, name, p string) error {
		if prev, dup := paths[p]; dup {
			return badRequest("%s %s: target %s is also the target of %s", kind, name, p, prev)
		}
		paths[p] = kind + " " + name
		return nil
	}
	for i := range t.Secrets {
		ref := &t.Secrets[i]
		want := cmp.Or(ref.Name, ref.ID)
		sec, err := findSecret(tx, want)
		if err != nil {
			return badRequest("secret %q not found: create it first with shoal secret create", want)
		}
		ref.ID, ref.Name = sec.ID, sec.Spec.Name
		if ref.Target == "" {
			ref.Target = sec.Spec.Name
		}
		if err := checkFileRef("secret", ref.Name, ref.Target, &ref.UID, &ref.GID, &ref.Mode); err != nil {
			return err
		}
		if err := claim("secret", ref.Name, ref.Path()); err != nil {
			return err
		}
	}
	for i := range t.Configs {
		ref := &t.Configs[i]
		want := cmp.Or(ref.Name, ref.ID)
		c, err := findConfig(tx, want)
		if err != nil {
			return badRequest("config %q not found: create it first with shoal config create", want)
		}
		ref.ID, ref.Name = c.ID, c.Spec.Name
		if ref.Target == "" {
			ref.Target = "/" + c.Spec.Name
		}
		if err := checkFileRef("config", ref.Name, ref.Target, &ref.UID, &ref.GID, &ref.Mode); err != nil {
			return err
		}
		if err := claim("config", ref.Name, ref.Path()); err != nil {
			return err
		}
	}
	return nil
}

func checkFileRef(kind, name, target string, uid, gid *string, mode *uint32) error {
	if err := api.ValidateTarget(kind, name, target); err != nil {
		return badRequest("%v", err)
	}
	for _, id := range []struct {
		what string
		v    *string
	}{{"uid", uid}, {"gid", gid}} {
		if *id.v == "" {
			*id.v = "0"
		}
		if _, err := strconv.ParseUint(*id.v, 10, 32); err != nil {
			return badRequest("%s %s: %s %q: want a number", kind, name, id.what, *id.v)
		}
	}
	if *mode == 0 {
		*mode = api.DefaultFileMode
	}
	if *mode > 0o777 {
		return badRequest("%s %s: mode %#o: want permission bits, at most 0777", kind, name, *mode)
	}
	return nil
}
