package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

func TestParseFileRef(t *testing.T) {
	for _, tc := range []struct {
		flag, in string
		want     api.SecretReference
		err      string
	}{
		{"--secret", "db_password", api.SecretReference{Name: "db_password"}, ""},
		{"--secret", "source=tls_key,target=/etc/tls/key.pem,uid=100,gid=101,mode=0400",
			api.SecretReference{Name: "tls_key", Target: "/etc/tls/key.pem", UID: "100", GID: "101", Mode: 0o400}, ""},
		{"--config", "src=nginx_conf,dst=/etc/nginx/nginx.conf", api.SecretReference{Name: "nginx_conf", Target: "/etc/nginx/nginx.conf"}, ""},
		{"--secret", "", api.SecretReference{}, "secret name: empty"},
		{"--secret", "target=x", api.SecretReference{}, "source is required"},
		{"--secret", "source=a,mode=999", api.SecretReference{}, `mode "999": want octal`},
		{"--secret", "source=a,colour=red", api.SecretReference{}, `unknown key "colour"`},
		{"--config", "a b", api.SecretReference{}, `config name "a b"`},
	} {
		got, err := parseFileRef(tc.flag, tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %q: got %v, want an error holding %q", tc.flag, tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %q: got %+v, %v; want %+v", tc.flag, tc.in, got, err, tc.want)
		}
	}
}

// TestFileFlagsOnUpdate: rm before add, so a rotation keeps the target; an
// unknown rm is an error.
func TestFileFlagsOnUpdate(t *testing.T) {
	cur := api.TaskSpec{Secrets: []api.SecretReference{{ID: "s1", Name: "db_password", Target: "db_password"}},
		Configs: []api.ConfigReference{{ID: "c1", Name: "conf", Target: "/conf"}}}
	for _, tc := range []struct {
		args []string
		want api.TaskSpec
		err  string
	}{
		{[]string{"--secret-rm", "db_password", "--secret-add", "source=db_password_v2,target=db_password"},
			api.TaskSpec{Secrets: []api.SecretReference{{Name: "db_password_v2", Target: "db_password"}}, Configs: cur.Configs}, ""},
		{[]string{"--config-rm", "conf"}, api.TaskSpec{Secrets: cur.Secrets, Configs: []api.ConfigReference{}}, ""},
		{[]string{"--secret-rm", "nope"}, api.TaskSpec{}, `--secret-rm "nope": the service has no such secret`},
	} {
		var f fileFlags
		fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
		f.registerUpdate(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		got := cur.Clone()
		err := f.applyUpdate(&got)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got.Secrets, tc.want.Secrets) || !reflect.DeepEqual(got.Configs, tc.want.Configs) {
			t.Errorf("%q: got %+v %+v, %v; want %+v %+v", tc.args, got.Secrets, got.Configs, err, tc.want.Secrets, tc.want.Configs)
		}
	}
}

func TestReadSecretData(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, api.MaxSecretBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ta := newTestApp(t, nil)
	ta.stdin = strings.NewReader("s3cret")
	if got, err := ta.readData("secret", "x", "-"); err != nil || string(got) != "s3cret" {
		t.Errorf("stdin: got %q, %v", got, err)
	}
	for file, msg := range map[string]string{
		filepath.Join(dir, "missing"): "no such file",
		big:                           "more than 512000 bytes",
		empty:                         "secret x: no data",
	} {
		if _, err := ta.readData("secret", "x", file); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: got %v, want %q", file, err, msg)
		}
	}
	// Nothing reaches a manager when the input is bad: no client is dialled.
	if code := ta.run("secret", "create", "x", filepath.Join(dir, "missing")); code == 0 {
		t.Error("secret create of a missing file succeeded")
	}
}
