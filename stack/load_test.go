package stack

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeFiles writes name -> content into a new directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		load  []string // files to load, in order
		env   []string
		// check the loaded stack; or wantErr: every substring must appear
		check   func(t *testing.T, l *Loaded, st *Stack)
		wantErr []string
	}{
		{
			name: "version 3 file, interpolation from env and .env, x- fields",
			files: map[string]string{
				"a.yml": `version: "3.8"
x-defaults: &defaults
  stop_grace_period: 3s
services:
  web:
    <<: *defaults
    image: ${REG:-docker.io}/web:${TAG}
    environment:
      LEVEL: ${LEVEL:-info}
    x-note: ignored
`,
				".env": "TAG=from-dotenv\nLEVEL=debug\n",
			},
			load: []string{"a.yml"},
			env:  []string{"REG=reg:5000"},
			check: func(t *testing.T, l *Loaded, st *Stack) {
				s := st.Services[0]
				if s.Task.Image != "reg:5000/web:from-dotenv" {
					t.Errorf("image %q: want reg:5000/web:from-dotenv", s.Task.Image)
				}
				if !slices.Equal(s.Task.Env, []string{"LEVEL=debug"}) {
					t.Errorf("env %v", s.Task.Env)
				}
				if s.Task.StopGracePeriod.String() != "3s" {
					t.Errorf("stop grace period %v (from the x- anchor)", s.Task.StopGracePeriod)
				}
			},
		},
		{
			name: "the environment beats .env",
			files: map[string]string{
				"a.yml": "services:\n  web:\n    image: web:${TAG}\n",
				".env":  "TAG=dotenv\n",
			},
			load: []string{"a.yml"},
			env:  []string{"TAG=env"},
			check: func(t *testing.T, l *Loaded, st *Stack) {
				if got := st.Services[0].Task.Image; got != "web:env" {
					t.Errorf("image %q: want web:env", got)
				}
			},
		},
		{
			name: "two files merged, the second wins; extends",
			files: map[string]string{
				"a.yml": `services:
  base:
    image: busybox
    environment: {A: "1"}
    deploy: {replicas: 2}
  web:
    extends: base
    command: ["sleep", "60"]
`,
				"b.yml": `services:
  web:
    image: busybox:2
    deploy: {replicas: 3}
`,
			},
			load: []string{"a.yml", "b.yml"},
			check: func(t *testing.T, l *Loaded, st *Stack) {
				var web = st.Services[1]
				if web.Name != "app_web" || web.Task.Image != "busybox:2" || web.Replicas != 3 {
					t.Errorf("web %s %s x%d: want app_web busybox:2 x3", web.Name, web.Task.Image, web.Replicas)
				}
				if !slices.Equal(web.Task.Env, []string{"A=1"}) || !slices.Equal(web.Task.Command, []string{"sleep", "60"}) {
					t.Errorf("web env %v command %v: want the extended env and own command", web.Task.Env, web.Task.Command)
				}
			},
		},
		{
			name: "keys Swarm ignores are listed once",
			files: map[string]string{"a.yml": `services:
  web:
    image: busybox
    build: .
    restart: always
    depends_on: [db]
    container_name: web1
  db:
    image: busybox
    restart: always
`},
			load: []string{"a.yml"},
			check: func(t *testing.T, l *Loaded, st *Stack) {
				if want := []string{"build", "container_name", "depends_on", "restart"}; !slices.Equal(l.Ignored, want) {
					t.Errorf("ignored %v: want %v", l.Ignored, want)
				}
			},
		},
		{
			name: "unknown key: file, line and key",
			files: map[string]string{
				"a.yml": "services:\n  web:\n    image: busybox\n",
				"b.yml": "services:\n  web:\n    image: busybox\n    replicas: 3\n",
			},
			load:    []string{"a.yml", "b.yml"},
			wantErr: []string{"b.yml:4: services.web.replicas: unknown key \"replicas\""},
		},
		{
			name:    "invalid value: file, line and key",
			files:   map[string]string{"a.yml": "services:\n  web:\n    image: busybox\n    deploy:\n      replicas: many\n"},
			load:    []string{"a.yml"},
			wantErr: []string{"a.yml:5: services.web.deploy.replicas"},
		},
		{
			name: "keys Shoal does not map are errors naming each",
			files: map[string]string{"a.yml": `services:
  web:
    image: busybox
    deploy:
      restart_policy:
        condition: on-failure
    devices: ["/dev/fuse"]
    logging:
      driver: syslog
`},
			load: []string{"a.yml"},
			wantErr: []string{
				"a.yml:8: services.web.logging: not supported by Shoal",
			},
		},
		{
			name:    "missing variable with :? is an error",
			files:   map[string]string{"a.yml": "services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n"},
			load:    []string{"a.yml"},
			wantErr: []string{"set IMAGE"},
		},
		{
			name:    "not YAML",
			files:   map[string]string{"a.yml": "services: [\n"},
			load:    []string{"a.yml"},
			wantErr: []string{"a.yml"},
		},
		{
			name:    "missing file",
			files:   map[string]string{},
			load:    []string{"nope.yml"},
			wantErr: []string{"nope.yml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			var files []string
			for _, f := range tt.load {
				files = append(files, filepath.Join(dir, f))
			}
			l, err := Load(context.Background(), Options{Files: files, Env: tt.env, Namespace: "app"})
			var st *Stack
			if err == nil {
				st, err = Convert(l.Project, "app")
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("loaded: want an error with %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q: want %q in it", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, l, st)
		})
	}
}

func TestCheckNamespace(t *testing.T) {
	for ns, ok := range map[string]bool{"app": true, "my-app_2": true, "": false, "App": false, "-x": false, "a.b": false} {
		if err := CheckNamespace(ns); (err == nil) != ok {
			t.Errorf("CheckNamespace(%q) = %v, want ok=%v", ns, err, ok)
		}
	}
}
