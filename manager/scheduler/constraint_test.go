package scheduler

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

func TestParseConstraint(t *testing.T) {
	tests := []struct {
		expr    string
		want    string // canonical form
		wantErr string // substring of the error
	}{
		{expr: "node.labels.zone==a", want: "node.labels.zone==a"},
		{expr: " node.labels.Zone != b ", want: "node.labels.Zone!=b"},
		{expr: "NODE.ROLE==manager", want: "node.role==manager"},
		{expr: "node.role!=Worker", want: "node.role!=Worker"},
		{expr: "node.id==abc", want: "node.id==abc"},
		{expr: "node.hostname==h1", want: "node.hostname==h1"},
		{expr: "node.platform.os==linux", want: "node.platform.os==linux"},
		{expr: "node.platform.arch!=arm64", want: "node.platform.arch!=arm64"},
		{expr: "node.labels.a.b==c", want: "node.labels.a.b==c"},
		{expr: "", wantErr: "empty"},
		{expr: "   ", wantErr: "empty"},
		{expr: "node.labels.zone=a", wantErr: "want KEY==VALUE or KEY!=VALUE"},
		{expr: "node.labels.zone", wantErr: "want KEY==VALUE or KEY!=VALUE"},
		{expr: "==a", wantErr: "missing key before =="},
		{expr: "node.labels.zone==", wantErr: "missing value after =="},
		{expr: "node.labels.zone!= ", wantErr: "missing value after !="},
		{expr: "node.labels.zone==a==b", wantErr: "more than one operator"},
		{expr: "node.labels.zone==a!=b", wantErr: "more than one operator"},
		{expr: "node.labels.==a", wantErr: "missing label name"},
		{expr: "node.name==a", wantErr: `unknown key "node.name"`},
		{expr: "engine.labels.x==a", wantErr: "unknown key"},
		{expr: "node.role==boss", wantErr: `node.role is manager or worker, not "boss"`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			c, err := ParseConstraint(tt.expr)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got %v, want an error containing %q", c, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidConstraint) {
					t.Errorf("got %v, want it to wrap ErrInvalidConstraint", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %s", err, tt.want)
			}
			if got := c.String(); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseConstraintsStopsAtFirstError(t *testing.T) {
	_, err := ParseConstraints([]string{"node.role==worker", "bogus", "node.id=="})
	if err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Fatalf("got %v, want an error about \"bogus\"", err)
	}
	cs, err := ParseConstraints([]string{"node.role==worker", "node.labels.zone!=a"})
	if err != nil || len(cs) != 2 {
		t.Fatalf("got %v, %v, want 2 constraints", cs, err)
	}
}

func TestConstraintMatch(t *testing.T) {
	n := &api.Node{
		ID:          "n1",
		Spec:        api.NodeSpec{Role: api.RoleWorker, Labels: map[string]string{"zone": "a", "disk": "SSD"}},
		Description: api.NodeDescription{Hostname: "host-1", OS: "linux", Arch: "amd64"},
	}
	tests := []struct {
		expr string
		want bool
	}{
		{"node.id==n1", true},
		{"node.id!=n1", false},
		{"node.hostname==host-1", true},
		{"node.hostname==HOST-1", true},
		{"node.hostname==host-2", false},
		{"node.role==worker", true},
		{"node.role==manager", false},
		{"node.role!=manager", true},
		{"node.labels.zone==a", true},
		{"node.labels.zone==b", false},
		{"node.labels.zone!=b", true},
		{"node.labels.disk==ssd", true},
		{"node.labels.Zone==a", false}, // label names are case-sensitive
		{"node.labels.missing==a", false},
		{"node.labels.missing!=a", true},
		{"node.platform.os==linux", true},
		{"node.platform.os!=linux", false},
		{"node.platform.arch==amd64", true},
		{"node.platform.arch==arm64", false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			c, err := ParseConstraint(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Match(n); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
