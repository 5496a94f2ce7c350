package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

// TestHealthFlagsOnUpdate: flags change the fields they name and keep the rest.
func TestHealthFlagsOnUpdate(t *testing.T) {
	cur := &api.HealthConfig{Test: []string{"CMD-SHELL", "x"}, Interval: 5 * time.Second, Retries: 2}
	for _, tc := range []struct {
		args []string
		cur  *api.HealthConfig
		want *api.HealthConfig
	}{
		{nil, cur, cur},
		{[]string{"--health-interval", "1s"}, cur, &api.HealthConfig{Test: []string{"CMD-SHELL", "x"}, Interval: time.Second, Retries: 2}},
		{[]string{"--health-cmd", ""}, cur, &api.HealthConfig{Interval: 5 * time.Second, Retries: 2}},
		{[]string{"--health-cmd", "", "--health-interval", "0s", "--health-retries", "0"}, cur, nil},
		{[]string{"--health-interval", "1s"}, &api.HealthConfig{Test: []string{"NONE"}}, &api.HealthConfig{Interval: time.Second}},
		{[]string{"--no-healthcheck=false"}, &api.HealthConfig{Test: []string{"NONE"}}, nil},
	} {
		var f healthFlags
		fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("parse %q: %v", tc.args, err)
		}
		got, err := f.apply(tc.cur)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q on %+v: got %+v, %v; want %+v", tc.args, tc.cur, got, err, tc.want)
		}
	}
}
