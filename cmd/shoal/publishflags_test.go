package main

import (
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

func TestServiceTablePorts(t *testing.T) {
	views := []api.ServiceView{
		{Service: api.Service{ID: "aaaaaaaaaaaaaaaa", Spec: api.ServiceSpec{Name: "edge", Mode: api.ModeGlobal, Task: api.TaskSpec{Image: "proxy"},
			Endpoint: api.EndpointSpec{Ports: []api.PortConfig{
				{Published: 443, Target: 8443, Protocol: "tcp", PublishMode: api.PublishHost},
				{Published: 8080, Target: 80, Protocol: "udp", PublishMode: api.PublishIngress, PublishedIP: "10.0.0.5"},
			}}}}},
		{Service: api.Service{ID: "bbbbbbbbbbbbbbbb", Spec: api.ServiceSpec{Name: "db", Mode: api.ModeReplicated, Task: api.TaskSpec{Image: "pg"}}}},
	}
	var b strings.Builder
	if err := writeServiceTable(&b, views); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID             NAME   MODE         REPLICAS   IMAGE   PORTS\n" +
		"aaaaaaaaaaaa   edge   global       0/0        proxy   *:443->8443/tcp (host), 10.0.0.5:8080->80/udp\n" +
		"bbbbbbbbbbbb   db     replicated   0/0        pg      -\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestPublishRmMatches(t *testing.T) {
	ports := []api.PortConfig{
		{Published: 8080, Target: 80, Protocol: "tcp", PublishedIP: "10.0.0.5"},
		{Published: 8080, Target: 80, Protocol: "tcp", PublishedIP: "10.0.0.6"},
		{Published: 443, Target: 8443, Protocol: "udp", PublishMode: api.PublishHost},
	}
	tests := []struct {
		arg  string
		want []bool
	}{
		{"8080", []bool{true, true, false}},
		{"10.0.0.5:8080", []bool{true, false, false}},
		{"10.0.0.6:8080:80/tcp", []bool{false, true, false}},
		{"443/udp", []bool{false, false, true}},
		{"443", []bool{false, false, false}},
	}
	for _, tt := range tests {
		m := publishMatcher(tt.arg)
		for i, p := range ports {
			if got := m(p); got != tt.want[i] {
				t.Errorf("--publish-rm %s on %s: %v, want %v", tt.arg, p, got, tt.want[i])
			}
		}
	}
}
