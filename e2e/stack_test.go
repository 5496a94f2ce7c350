package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/testimage"
)

// stackFile is the multi-service stack of TestStack: two networks (web and
// api on front, api and db on back), a published port, a constraint, a
// secret, a config, an update_config, a health check, and a named volume
// and container settings (their stored form is compared on redeploy). Images come from
// .env (REG, API_TAG).
const stackFile = `version: "3.8"
x-image: &image ${REG}/busybox:latest
services:
  web:
    image: *image
    ports: ["8080:80"]
    networks: [front]
    secrets: [token]
    configs:
      - source: greeting
        target: /etc/greeting
    healthcheck:
      test: ["CMD-SHELL", "test -f /www/index.html"]
      interval: 1s
      retries: 3
    deploy:
      replicas: 2
      update_config: {parallelism: 1, delay: 1s, order: start-first}
    depends_on: [api]
  api:
    image: ${REG}/busybox:${API_TAG:-latest}
    networks: [front, back]
    deploy:
      placement:
        constraints: [node.role == worker]
      update_config: {parallelism: 1, monitor: 1s}
  db:
    image: *image
    networks: [back]
    volumes: ["dbdata:/var/lib/db"]
    cap_drop: [net_raw]
    init: true
networks:
  front: {}
  back: {}
volumes:
  dbdata: {}
secrets:
  token: {file: ./token.txt}
configs:
  greeting: {content: "hello from the stack"}
`

// stackRun drives TestStack.
type stackRun struct {
	*services
	dir string
}

// deploy runs stack deploy with the files in dir, allowing it up to timeout.
func (s *stackRun) deploy(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	full := []string{"stack", "deploy", "--timeout", timeout.String()}
	return s.m.ShoalCtx(ctx, append(full, args...)...)
}

// write puts files into the run's directory.
func (s *stackRun) write(t testing.TB, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// liveIDs are the IDs of a service's tasks that should run, sorted.
func (s *stackRun) liveIDs(t testing.TB, svc string) []string {
	t.Helper()
	tasks, err := Tasks(s.m, svc)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tk := range Live(tasks) {
		out = append(out, tk.ID)
	}
	slices.Sort(out)
	return out
}

// listJSON runs `KIND ls --format json` and returns the names of what has
// the stack label of ns.
func (s *stackRun) labelled(t testing.TB, kind, ns string) []string {
	t.Helper()
	out := s.run(t, kind, "ls", "--format", "json")
	var objs []struct {
		Spec struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(out), &objs); err != nil {
		t.Fatalf("%s ls --format json: %v: %q", kind, err, out)
	}
	var names []string
	for _, o := range objs {
		if o.Spec.Labels["com.docker.stack.namespace"] == ns {
			names = append(names, o.Spec.Name)
		}
	}
	slices.Sort(names)
	return names
}

// TestStack deploys a compose stack on a manager and a worker with real
// containers: it converges, services reach each other by name over their
// networks, a redeploy with one image changed rolls only that service, a
// stack with an image that does not exist fails naming it, and stack rm
// leaves nothing behind.
func TestStack(t *testing.T) {
	requireEngine(t)
	requireOverlay(t)
	shoalBin(t)
	c := newOverlayCluster(t, 1, 1)
	s := &stackRun{services: &services{c: c, m: c.Managers[0]}, dir: t.TempDir()}
	s.ready(t)
	m, w := c.Managers[0], c.Workers[0]
	file := filepath.Join(s.dir, "stack.yml")
	s.write(t, map[string]string{"stack.yml": stackFile, "token.txt": "s3cret\n", ".env": "REG=" + c.RegistryAddr + "\n"})

	t.Run("deploy_converges", func(t *testing.T) {
		defer c.Net.Bind(t)()
		start := time.Now()
		out, err := s.deploy(3*time.Minute, "-c", file, "app")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		report(t, "stack of 3 services (4 tasks, 2 networks, a secret, a config) converged: %.2fs after stack deploy", time.Since(start).Seconds())
		for _, want := range []string{"Creating network app_front", "Creating secret app_token", "Creating config app_greeting", "Creating service app_web", "Stack converged: 3 services"} {
			if !strings.Contains(out, want) {
				t.Errorf("deploy output: want %q in\n%s", want, out)
			}
		}
		var views []api.ServiceView
		if err := json.Unmarshal([]byte(s.run(t, "stack", "services", "--format", "json", "app")), &views); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range views {
			got = append(got, fmt.Sprintf("%s %d/%d", v.Spec.Name, v.Running, v.Desired))
		}
		if want := []string{"app_api 1/1", "app_db 1/1", "app_web 2/2"}; !slices.Equal(got, want) {
			t.Errorf("stack services: %v, want %v", got, want)
		}
		for _, tk := range Live(mustTasks(t, m, "app_api")) {
			if tk.NodeID != c.IDs[w.Name] {
				t.Errorf("api task %s on %s: the constraint wants the worker", tk.ID, tk.NodeID)
			}
		}
		if got := s.labelled(t, "network", "app"); !slices.Equal(got, []string{"app_back", "app_front"}) {
			t.Errorf("stack networks %v, want app_back app_front", got)
		}
		if ls := s.run(t, "stack", "ls"); !strings.Contains(ls, "app") || !strings.Contains(ls, "3") {
			t.Errorf("stack ls:\n%s", ls)
		}
	})

	t.Run("reach_by_name", func(t *testing.T) {
		defer c.Net.Bind(t)()
		web := Live(mustTasks(t, m, "app_web"))[0]
		db := Live(mustTasks(t, m, "app_db"))[0]
		// web (front) reaches api by its name in the file; db (back) too.
		for _, from := range []*api.Task{web, db} {
			eventually(t, convergeTimeout, func() error {
				out, err := c.TaskExec(c.HostByID(from.NodeID), from.ID, httpGet("api"), 20*time.Second)
				if err != nil || !strings.Contains(out, testimage.IndexHTML) {
					return fmt.Errorf("%s -> api: %v: %q", from.ServiceName, err, out)
				}
				return nil
			})
		}
		// web and db share no network: db's name does not resolve from web.
		out, _ := c.TaskExec(c.HostByID(web.NodeID), web.ID, "nslookup db 127.0.0.11", 20*time.Second)
		if addrs := NslookupAddrs(out); len(addrs) > 0 {
			t.Errorf("web resolved db (on another network) to %v", addrs)
		}
		// The secret and the config are files in web's tasks.
		out, err := c.TaskExec(c.HostByID(web.NodeID), web.ID, "cat /run/secrets/token /etc/greeting", 20*time.Second)
		if err != nil || out != "s3cret\nhello from the stack" {
			t.Errorf("secret and config in web's task: %q, %v; want the token file and the greeting", out, err)
		}
		// The published port answers through the routing mesh.
		eventually(t, convergeTimeout, func() error { return httpGetPage(c.Registry, net.JoinHostPort(m.IP, "8080")) })
	})

	t.Run("redeploy_one_changed_image", func(t *testing.T) {
		defer c.Net.Bind(t)()
		im, err := testimage.Build("")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := im.Push(ctx, c.Registry.HTTPClient(10*time.Second), c.RegistryAddr+"/busybox:v2"); err != nil {
			t.Fatal(err)
		}
		webBefore, dbBefore, apiBefore := s.liveIDs(t, "app_web"), s.liveIDs(t, "app_db"), s.liveIDs(t, "app_api")
		s.write(t, map[string]string{".env": "REG=" + c.RegistryAddr + "\nAPI_TAG=v2\n"})
		start := time.Now()
		out, err := s.deploy(3*time.Minute, "-c", file, "app")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		report(t, "redeploy with the api image changed: %.2fs to converged", time.Since(start).Seconds())
		for _, want := range []string{"Updating service app_api", "Service app_web unchanged", "Service app_db unchanged"} {
			if !strings.Contains(out, want) {
				t.Errorf("redeploy output: want %q in\n%s", want, out)
			}
		}
		if got := s.liveIDs(t, "app_web"); !slices.Equal(got, webBefore) {
			t.Errorf("web tasks %v, were %v: an unchanged service was restarted", got, webBefore)
		}
		if got := s.liveIDs(t, "app_db"); !slices.Equal(got, dbBefore) {
			t.Errorf("db tasks %v, were %v: an unchanged service was restarted", got, dbBefore)
		}
		api2 := Live(mustTasks(t, m, "app_api"))
		if len(api2) != 1 || slices.Contains(apiBefore, api2[0].ID) || !strings.HasSuffix(api2[0].Spec.Image, ":v2") {
			t.Errorf("api tasks after the redeploy: %s, want one new task on :v2", c.TaskSummary(api2))
		}
	})

	t.Run("prune", func(t *testing.T) {
		defer c.Net.Bind(t)()
		noDB := strings.Replace(stackFile, "  db:\n    image: *image\n    networks: [back]\n    volumes: [\"dbdata:/var/lib/db\"]\n    cap_drop: [net_raw]\n    init: true\n", "", 1)
		if noDB == stackFile {
			t.Fatal("the db service is not in the stack file as expected")
		}
		s.write(t, map[string]string{"nodb.yml": noDB})
		out, err := s.deploy(time.Minute, "-c", filepath.Join(s.dir, "nodb.yml"), "--prune", "app")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "Removing service app_db") {
			t.Errorf("deploy --prune output: want app_db removed in\n%s", out)
		}
		if got := s.labelled(t, "service", "app"); !slices.Equal(got, []string{"app_api", "app_web"}) {
			t.Errorf("stack services after --prune: %v", got)
		}
	})

	t.Run("broken_image_fails", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.write(t, map[string]string{"bad.yml": "services:\n  good:\n    image: ${REG}/busybox:latest\n  broken:\n    image: ${REG}/busybox:no-such-tag\n"})
		start := time.Now()
		out, err := s.deploy(2*time.Minute, "-c", filepath.Join(s.dir, "bad.yml"), "bad")
		if err == nil {
			t.Fatalf("deploy of a missing image succeeded:\n%s", out)
		}
		report(t, "deploy with a missing image failed after %.2fs: %v", time.Since(start).Seconds(), err)
		if msg := err.Error(); !strings.Contains(msg, "failed: bad_broken") || strings.Contains(msg, "bad_good") {
			t.Errorf("error %q: want bad_broken named as failed, bad_good not", msg)
		}
		s.run(t, "stack", "rm", "bad")
	})

	t.Run("invalid_file_creates_nothing", func(t *testing.T) {
		s.write(t, map[string]string{"invalid.yml": "services:\n  web:\n    image: busybox\n    replicas: 3\n"})
		out, err := s.m.Shoal("stack", "deploy", "-c", filepath.Join(s.dir, "invalid.yml"), "inv")
		if err == nil || !strings.Contains(err.Error(), "invalid.yml:4: services.web.replicas: unknown key") {
			t.Errorf("deploy of an invalid file: %v\n%s: want file, line and key named", err, out)
		}
		if got := s.labelled(t, "network", "inv"); len(got) > 0 {
			t.Errorf("networks created for an invalid file: %v", got)
		}
	})

	t.Run("sample_getstarted", func(t *testing.T) {
		// Shaped like Docker's get-started stack (stack/testdata/samples).
		defer c.Net.Bind(t)()
		b, err := os.ReadFile(filepath.Join("..", "stack", "testdata", "samples", "getstarted.yml"))
		if err != nil {
			t.Fatal(err)
		}
		s.write(t, map[string]string{"getstarted.yml": string(b)})
		start := time.Now()
		out, err := s.deploy(3*time.Minute, "-c", filepath.Join(s.dir, "getstarted.yml"), "getstarted")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		report(t, "get-started sample stack (5 replicas with limits, port 4000) converged: %.2fs", time.Since(start).Seconds())
		eventually(t, convergeTimeout, func() error { return httpGetPage(c.Registry, net.JoinHostPort(w.IP, "4000")) })
		s.run(t, "stack", "rm", "getstarted")
	})

	t.Run("rm_leaves_nothing", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "stack", "rm", "app")
		for _, kind := range []string{"service", "network", "secret", "config"} {
			if got := s.labelled(t, kind, "app"); len(got) > 0 {
				t.Errorf("after stack rm: %ss %v left", kind, got)
			}
		}
		if got := s.labelled(t, "service", "bad"); len(got) > 0 {
			t.Errorf("after stack rm bad: services %v left", got)
		}
		eventually(t, convergeTimeout, func() error { return s.containersMatch([]*Host{m, w}) })
	})
}
