package controlapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

func TestSecretCreateInspectNeverShowsData(t *testing.T) {
	f, m := leaderFixture(t)
	c := m.admin()
	var created api.Secret
	want(t, c.do("POST", "/v1/secrets", api.SecretSpec{Name: "db_password", Data: []byte("s3cret"),
		Labels: map[string]string{"env": "prod"}}), http.StatusOK).decode(t, &created)
	if created.ID == "" || created.Spec.Name != "db_password" || created.Spec.Labels["env"] != "prod" {
		t.Errorf("got %+v", created)
	}
	for _, a := range []answer{
		c.do("POST", "/v1/secrets", api.SecretSpec{Name: "other", Data: []byte("xx")}),
		c.do("GET", "/v1/secrets/db_password", nil),
		c.do("GET", "/v1/secrets/"+created.ID[:6], nil),
		c.do("GET", "/v1/secrets", nil),
	} {
		want(t, a, http.StatusOK)
		if bytes.Contains(a.body, []byte("s3cret")) || bytes.Contains(a.body, []byte(`"data"`)) ||
			bytes.Contains(a.body, []byte("eHg=")) || bytes.Contains(a.body, []byte("czNjcmV0")) {
			t.Errorf("answer holds secret data: %s", a.body)
		}
	}
	var stored *api.Secret
	f.store.View(func(tx store.ReadTx) { stored = tx.Secret(created.ID) })
	if stored == nil || string(stored.Spec.Data) != "s3cret" {
		t.Errorf("stored %+v, want the data kept", stored)
	}
	want(t, m.asNode("w1", api.RoleWorker).do("GET", "/v1/secrets", nil), http.StatusForbidden)
}

func TestSecretAndConfigRefuse(t *testing.T) {
	f, m := leaderFixture(t)
	c := m.admin()
	want(t, c.do("POST", "/v1/secrets", api.SecretSpec{Name: "taken", Data: []byte("x")}), http.StatusOK)
	want(t, c.do("POST", "/v1/configs", api.ConfigSpec{Name: "taken", Data: []byte("x")}), http.StatusOK)
	big := bytes.Repeat([]byte("a"), api.MaxSecretBytes+1)
	for _, kind := range []string{"secrets", "configs"} {
		one := strings.TrimSuffix(kind, "s")
		tests := []struct {
			name string
			body any
			msg  string
		}{
			{"empty name", api.SecretSpec{Data: []byte("x")}, one + " name: empty"},
			{"bad name", api.SecretSpec{Name: "a/b", Data: []byte("x")}, `name "a/b": want 1-64 letters`},
			{"no data", api.SecretSpec{Name: "x"}, one + " x: no data"},
			{"too large", api.SecretSpec{Name: "x", Data: big}, "512001 bytes of data, at most 512000"},
			{"duplicate", api.SecretSpec{Name: "taken", Data: []byte("y")}, `a ` + one + ` named "taken" exists already`},
		}
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				refused(t, f, tt.msg, func() answer { return c.do("POST", "/v1/"+kind, tt.body) })
			})
		}
	}
	var cfg api.Config
	want(t, c.do("GET", "/v1/configs/taken", nil), http.StatusOK).decode(t, &cfg)
	if string(cfg.Spec.Data) != "x" {
		t.Errorf("config inspect: data %q, want x (configs are not secret)", cfg.Spec.Data)
	}
}

func TestServiceFileRefs(t *testing.T) {
	f, m := leaderFixture(t)
	c := m.admin()
	var sec api.Secret
	want(t, c.do("POST", "/v1/secrets", api.SecretSpec{Name: "db_password", Data: []byte("s3cret")}), http.StatusOK).decode(t, &sec)
	want(t, c.do("POST", "/v1/secrets", api.SecretSpec{Name: "tls_key", Data: []byte("k")}), http.StatusOK)
	want(t, c.do("POST", "/v1/configs", api.ConfigSpec{Name: "nginx_conf", Data: []byte("c")}), http.StatusOK)

	spec := func(secrets []api.SecretReference, configs []api.ConfigReference) api.ServiceSpec {
		return api.ServiceSpec{Name: "api", Task: api.TaskSpec{Image: "busybox", Secrets: secrets, Configs: configs}}
	}
	refusals := []struct {
		name string
		spec api.ServiceSpec
		msg  string
	}{
		{"unknown secret", spec([]api.SecretReference{{Name: "nope"}}, nil), `secret "nope" not found`},
		{"unknown config", spec(nil, []api.ConfigReference{{Name: "nope"}}), `config "nope" not found`},
		{"same target", spec([]api.SecretReference{{Name: "db_password"}, {Name: "tls_key", Target: "db_password"}}, nil),
			"target /run/secrets/db_password is also the target of secret db_password"},
		{"dotdot", spec([]api.SecretReference{{Name: "db_password", Target: "../etc/passwd"}}, nil), "want a clean path with no .. in it"},
		{"bad uid", spec([]api.SecretReference{{Name: "db_password", UID: "root"}}, nil), `uid "root": want a number`},
		{"bad mode", spec([]api.SecretReference{{Name: "db_password", Mode: 0o4755}}, nil), "at most 0777"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, f, tt.msg, func() answer { return c.do("POST", "/v1/services", tt.spec) })
		})
	}

	var svc api.ServiceView
	want(t, c.do("POST", "/v1/services", spec(
		[]api.SecretReference{{Name: "db_password"}, {Name: "tls_key", Target: "/etc/tls/key.pem", UID: "100", GID: "101", Mode: 0o400}},
		[]api.ConfigReference{{Name: "nginx_conf"}})), http.StatusOK).decode(t, &svc)
	got := svc.Spec.Task
	wantSecrets := []api.SecretReference{
		{ID: sec.ID, Name: "db_password", Target: "db_password", UID: "0", GID: "0", Mode: 0o444},
		{Name: "tls_key", Target: "/etc/tls/key.pem", UID: "100", GID: "101", Mode: 0o400},
	}
	if len(got.Secrets) != 2 || got.Secrets[0] != wantSecrets[0] || got.Secrets[1].ID == "" ||
		got.Secrets[1].Target != wantSecrets[1].Target || got.Secrets[1].Mode != 0o400 || got.Secrets[1].UID != "100" {
		t.Errorf("secrets %+v, want %+v", got.Secrets, wantSecrets)
	}
	if len(got.Configs) != 1 || got.Configs[0].Target != "/nginx_conf" || got.Configs[0].Path() != "/nginx_conf" || got.Configs[0].Mode != 0o444 {
		t.Errorf("configs %+v, want nginx_conf at /nginx_conf, 0444", got.Configs)
	}

	refused(t, f, "secret db_password is in use by service api", func() answer { return c.do("DELETE", "/v1/secrets/db_password", nil) })
	refused(t, f, "config nginx_conf is in use by service api", func() answer { return c.do("DELETE", "/v1/configs/nginx_conf", nil) })

	// An update that drops a secret frees it once no live task holds it.
	next := svc.Spec
	next.Task.Secrets = next.Task.Secrets[1:]
	want(t, c.do("POST", "/v1/services/api/update", api.ServiceUpdate{Spec: &next}), http.StatusOK)
	want(t, c.do("DELETE", "/v1/secrets/db_password", nil), http.StatusNoContent)
	refused(t, f, "secret tls_key is in use by service api", func() answer { return c.do("DELETE", "/v1/secrets/tls_key", nil) })
	want(t, c.do("DELETE", "/v1/services/api", nil), http.StatusNoContent)
	want(t, c.do("DELETE", "/v1/secrets/tls_key", nil), http.StatusNoContent)
	want(t, c.do("DELETE", "/v1/configs/nginx_conf", nil), http.StatusNoContent)
	want(t, c.do("DELETE", "/v1/configs/nginx_conf", nil), http.StatusNotFound)
}
