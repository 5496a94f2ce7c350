package stack

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

func load(t *testing.T, yml string) (*Stack, error) {
	t.Helper()
	dir := writeFiles(t, map[string]string{"stack.yml": yml})
	l, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "stack.yml")}, Namespace: "app"})
	if err != nil {
		return nil, err
	}
	return Convert(l.Project, "app")
}

func dur(d time.Duration) *time.Duration { return &d }

func TestConvertService(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want api.ServiceSpec // compared as JSON
	}{
		{
			name: "defaults: one replica, the default network, the namespace label, the alias",
			yml:  "services:\n  web:\n    image: busybox\n",
			want: api.ServiceSpec{
				Name: "app_web", Labels: map[string]string{LabelNamespace: "app"}, Mode: api.ModeReplicated, Replicas: 1,
				Task: api.TaskSpec{Image: "busybox"}, Networks: []string{"app_default"}, Aliases: []string{"web"},
			},
		},
		{
			name: "everything mapped",
			yml: `version: "3.9"
services:
  web:
    image: reg/web:1
    entrypoint: ["/bin/sh", "-c"]
    command: ["httpd -f"]
    environment: [B=2, A=1]
    user: "1000"
    working_dir: /srv
    stop_grace_period: 1m30s
    stop_signal: SIGQUIT
    hostname: web-host
    group_add: [audio]
    read_only: true
    init: true
    tty: true
    cap_add: [net_admin]
    cap_drop: [CAP_CHOWN]
    sysctls: {net.core.somaxconn: "1024"}
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 64
    dns: [10.0.0.53]
    dns_search: [example.internal]
    dns_opt: [ndots:2]
    extra_hosts: ["db.local:10.0.0.9"]
    tmpfs: [/run]
    volumes:
      - data:/var/lib/data
      - /srv/static:/static:ro
      - type: tmpfs
        target: /cache
        tmpfs: {size: 1048576, mode: 0700}
      - type: volume
        source: shared
        target: /shared
        volume: {nocopy: true}
    ports:
      - "8080:80"
      - target: 53
        published: 5353
        protocol: udp
        mode: host
        host_ip: 10.0.0.5
    networks: [front, back]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- localhost"]
      interval: 2s
      timeout: 1s
      retries: 5
      start_period: 3s
    deploy:
      replicas: 3
      labels: {team: web}
      endpoint_mode: vip
      placement:
        constraints: [node.role == worker]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      resources:
        limits: {cpus: "0.5", memory: 64M}
        reservations: {cpus: "0.25", memory: 32M}
      restart_policy: {condition: on-failure, delay: 2s, max_attempts: 4}
      update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback, monitor: 3s, max_failure_ratio: 0.5}
      rollback_config: {parallelism: 0}
networks:
  front:
  back:
    external: true
    name: shared
volumes:
  data:
  shared: {external: true, name: team-data}
`,
			want: api.ServiceSpec{
				Name: "app_web", Labels: map[string]string{LabelNamespace: "app", "team": "web"}, Mode: api.ModeReplicated, Replicas: 3,
				Task: api.TaskSpec{
					Image: "reg/web:1", Command: []string{"httpd -f"}, Env: []string{"A=1", "B=2"},
					User: "1000", Workdir: "/srv", StopGracePeriod: 90 * time.Second,
					Resources: api.Resources{
						Limits:       api.ResourceAmounts{NanoCPUs: 5e8, MemoryBytes: 64 << 20},
						Reservations: api.ResourceAmounts{NanoCPUs: 25e7, MemoryBytes: 32 << 20},
					},
					Restart:     api.RestartPolicy{Condition: api.RestartOnFailure, Delay: dur(2 * time.Second), MaxAttempts: 4},
					Placement:   api.Placement{Constraints: []string{"node.role == worker"}, Preferences: []api.PlacementPreference{{Spread: "node.labels.zone"}}, MaxReplicas: 2},
					Healthcheck: &api.HealthConfig{Test: []string{"CMD-SHELL", "wget -q -O- localhost"}, Interval: 2 * time.Second, Timeout: time.Second, Retries: 5, StartPeriod: 3 * time.Second},
					Mounts: []api.Mount{
						{Type: api.MountTmpfs, Target: "/run"},
						{Type: api.MountVolume, Source: "app_data", Target: "/var/lib/data"},
						{Type: api.MountBind, Source: "/srv/static", Target: "/static", ReadOnly: true},
						{Type: api.MountTmpfs, Target: "/cache", TmpfsSize: 1 << 20, TmpfsMode: 0o700},
						{Type: api.MountVolume, Source: "team-data", Target: "/shared", VolumeNoCopy: true},
					},
					Entrypoint: []string{"/bin/sh", "-c"}, Hostname: "web-host", Groups: []string{"audio"}, ReadOnly: true, Init: true, TTY: true,
					CapAdd: []string{"net_admin"}, CapDrop: []string{"CAP_CHOWN"}, Sysctls: map[string]string{"net.core.somaxconn": "1024"},
					Ulimits:    []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: 64, Hard: 64}},
					StopSignal: "SIGQUIT",
					DNS:        &api.DNSConfig{Nameservers: []string{"10.0.0.53"}, Search: []string{"example.internal"}, Options: []string{"ndots:2"}},
					Hosts:      []string{"db.local:10.0.0.9"},
				},
				Networks: []string{"shared", "app_front"},
				Aliases:  []string{"web"},
				Endpoint: api.EndpointSpec{Mode: api.EndpointVIP, Ports: []api.PortConfig{
					{Published: 8080, Target: 80, Protocol: "tcp", PublishMode: api.PublishIngress},
					{Published: 5353, Target: 53, Protocol: "udp", PublishMode: api.PublishHost, PublishedIP: "10.0.0.5"},
				}},
				Update:   &api.UpdateConfig{Parallelism: 2, Delay: 10 * time.Second, FailureAction: api.ActionRollback, Monitor: 3 * time.Second, MaxFailureRatio: 0.5, Order: api.OrderStartFirst},
				Rollback: &api.UpdateConfig{Parallelism: 0, FailureAction: api.ActionPause, Monitor: 5 * time.Second, Order: api.OrderStopFirst},
			},
		},
		{
			name: "global, command alone, health check disabled, dnsrr",
			yml: `services:
  agent:
    image: busybox
    command: sleep 1000
    healthcheck: {disable: true}
    deploy: {mode: global, endpoint_mode: dnsrr}
`,
			want: api.ServiceSpec{
				Name: "app_agent", Labels: map[string]string{LabelNamespace: "app"}, Mode: api.ModeGlobal,
				Task:     api.TaskSpec{Image: "busybox", Command: []string{"sleep", "1000"}, Healthcheck: &api.HealthConfig{Test: []string{"NONE"}}},
				Networks: []string{"app_default"}, Aliases: []string{"agent"},
				Endpoint: api.EndpointSpec{Mode: api.EndpointDNSRR},
			},
		},
		{
			name: "jobs: completions, default one",
			yml:  "services:\n  migrate:\n    image: busybox\n    deploy: {mode: replicated-job, replicas: 3}\n",
			want: api.ServiceSpec{
				Name: "app_migrate", Labels: map[string]string{LabelNamespace: "app"}, Mode: api.ModeReplicatedJob, Replicas: 3,
				Task: api.TaskSpec{Image: "busybox"}, Networks: []string{"app_default"}, Aliases: []string{"migrate"},
			},
		},
		{
			name: "global job",
			yml:  "services:\n  prep:\n    image: busybox\n    deploy: {mode: global-job}\n",
			want: api.ServiceSpec{
				Name: "app_prep", Labels: map[string]string{LabelNamespace: "app"}, Mode: api.ModeGlobalJob,
				Task: api.TaskSpec{Image: "busybox"}, Networks: []string{"app_default"}, Aliases: []string{"prep"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := load(t, tt.yml)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Services) != 1 {
				t.Fatalf("%d services, want 1", len(st.Services))
			}
			got, _ := json.MarshalIndent(st.Services[0], "", " ")
			want, _ := json.MarshalIndent(tt.want, "", " ")
			if string(got) != string(want) {
				t.Errorf("spec:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestConvertNetworks(t *testing.T) {
	st, err := load(t, `services:
  a: {image: busybox, networks: [front, ext]}
  b: {image: busybox}
networks:
  front:
    labels: {tier: web}
    ipam: {config: [{subnet: 10.9.0.0/24}]}
  unused: {}
  ext: {external: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(st.Networks)
	want, _ := json.Marshal([]Network{
		{Spec: api.NetworkSpec{Name: "app_default", Labels: map[string]string{LabelNamespace: "app"}}},
		{Spec: api.NetworkSpec{Name: "ext"}, External: true},
		{Spec: api.NetworkSpec{Name: "app_front", Subnet: "10.9.0.0/24", Labels: map[string]string{LabelNamespace: "app", "tier": "web"}}},
	})
	if string(got) != string(want) {
		t.Errorf("networks:\n%s\nwant:\n%s", got, want)
	}
}

func TestConvertErrors(t *testing.T) {
	tests := []struct{ name, yml, want string }{
		{"no image", "services:\n  web:\n    build: .\n", "services.web: image: required"},
		{"anonymous volume", "services:\n  web:\n    image: b\n    volumes: [/data]\n", "volumes: /data: an anonymous volume"},
		{"volume driver", "services:\n  web:\n    image: b\n    volumes:\n      - \"vol:/data\"\nvolumes:\n  vol: {driver: nfs}\n", `driver "nfs": Shoal has node-local volumes only`},
		{"bad capability", "services:\n  web:\n    image: b\n    cap_add: [FLY]\n", `capability "FLY"`},
		{"IPv6 host_ip", "services:\n  web:\n    image: b\n    ports: [{target: 80, published: 80, host_ip: \"::1\"}]\n", "only IPv4 addresses"},
		{"no published port", "services:\n  web:\n    image: b\n    ports: [\"6379\"]\n", "services.web: ports: target 6379: no published port"},
		{"bad spread", "services:\n  web:\n    image: b\n    deploy: {placement: {preferences: [{spread: zone}]}}\n", "deploy.placement.preferences: spread descriptor"},
		{"network driver", "services:\n  web:\n    image: b\n    networks: [n]\nnetworks:\n  n: {driver: bridge}\n", `networks.n.driver "bridge"`},
		{"name too long", "services:\n  " + strings.Repeat("x", 70) + ":\n    image: b\n", "want 1-63"},
		{"global with replicas", "services:\n  web:\n    image: b\n    deploy: {mode: global, replicas: 2}\n", "global service takes no replica count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v: want %q in it", err, tt.want)
			}
		})
	}
}

func TestConvertSecretsConfigs(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"stack.yml": `services:
  web:
    image: busybox
    secrets:
      - db_password
      - source: tls
        target: /etc/tls.key
        uid: "100"
        mode: 0400
    configs:
      - site
      - source: ext_cfg
        target: /etc/ext
networks: {}
secrets:
  db_password: {file: ./pw.txt}
  tls: {environment: TLS_KEY}
  unused: {file: ./nope}
configs:
  site: {content: "hello"}
  ext_cfg: {external: true, name: shared-config}
`,
		"pw.txt": "s3cret\n",
	})
	l, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "stack.yml")}, Namespace: "app", Env: []string{"TLS_KEY=key"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := Convert(l.Project, "app")
	if err != nil {
		t.Fatal(err)
	}
	if err := ReadData(st); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal([]any{st.Secrets, st.Configs, st.Services[0].Task.Secrets, st.Services[0].Task.Configs})
	ns := map[string]string{LabelNamespace: "app"}
	want, _ := json.Marshal([]any{
		[]Object{
			{Name: "app_db_password", Labels: ns, File: filepath.Join(dir, "pw.txt"), Data: []byte("s3cret\n")},
			{Name: "app_tls", Labels: ns, Data: []byte("key")},
		},
		[]Object{
			{Name: "shared-config", External: true},
			{Name: "app_site", Labels: ns, Data: []byte("hello")},
		},
		[]api.SecretReference{
			{Name: "app_db_password", Target: "/run/secrets/db_password"},
			{Name: "app_tls", Target: "/etc/tls.key", UID: "100", Mode: 0o400},
		},
		[]api.ConfigReference{
			{Name: "app_site", Target: "/site"},
			{Name: "shared-config", Target: "/etc/ext"},
		},
	})
	if string(got) != string(want) {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	// A redeploy of the same spec over what the API stored is unchanged.
	ids := IDs{Networks: map[string]string{"app_default": "n"}, Secrets: map[string]string{"app_db_password": "s1", "app_tls": "s2"},
		Configs: map[string]string{"app_site": "c1", "shared-config": "c2"}}
	stored, err := Resolve(st.Services[0], ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := stored.Task.Secrets[0]; r.ID != "s1" || r.UID != "0" || r.GID != "0" || r.Mode != 0o444 {
		t.Errorf("resolved secret reference %+v: want ID s1, owner 0:0, mode 0444", r)
	}
	p, err := MakePlan(st, Cluster{
		Networks: []api.Network{{ID: "n", Spec: api.NetworkSpec{Name: "app_default", Labels: ns}}},
		Services: []api.ServiceView{{Service: api.Service{ID: "x", Spec: stored}}},
		Secrets:  []api.Secret{{ID: "s1", Spec: api.SecretSpec{Name: "app_db_password", Labels: ns}}, {ID: "s2", Spec: api.SecretSpec{Name: "app_tls", Labels: ns}}},
		Configs:  []api.Config{{ID: "c1", Spec: api.ConfigSpec{Name: "app_site", Labels: ns, Data: []byte("hello")}}, {ID: "c2", Spec: api.ConfigSpec{Name: "shared-config"}}},
	})
	if err != nil || len(p.Unchanged) != 1 || len(p.CreateSecrets)+len(p.CreateConfigs)+len(p.Update) != 0 {
		t.Errorf("plan %+v, %v: want the service unchanged and nothing to create", p, err)
	}
	// A config whose data changed is refused.
	_, err = MakePlan(st, Cluster{Configs: []api.Config{{ID: "c1", Spec: api.ConfigSpec{Name: "app_site", Labels: ns, Data: []byte("old")}}, {ID: "c2", Spec: api.ConfigSpec{Name: "shared-config"}}}})
	if err == nil || !strings.Contains(err.Error(), "config app_site exists with other data") {
		t.Errorf("error %v: want the changed config named", err)
	}
}
