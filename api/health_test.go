package api

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHealthConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		h    *HealthConfig
		want string // substring of the error; empty for none
	}{
		{nil, ""},
		{&HealthConfig{}, ""},
		{&HealthConfig{Test: []string{"CMD", "true"}, Interval: time.Second}, ""},
		{&HealthConfig{Test: []string{"CMD-SHELL", "exit 0"}}, ""},
		{&HealthConfig{Test: []string{"NONE"}}, ""},
		{&HealthConfig{Test: []string{"NONE", "x"}}, "NONE takes no command"},
		{&HealthConfig{Test: []string{"CMD"}}, "want a command"},
		{&HealthConfig{Test: []string{"CMD-SHELL", "a", "b"}}, "one shell command"},
		{&HealthConfig{Test: []string{"sh", "-c", "x"}}, `"sh": want CMD`},
		{&HealthConfig{Retries: -1}, "must not be negative"},
		{&HealthConfig{Interval: time.Microsecond}, "interval 1µs: at least 1ms"},
	} {
		err := tc.h.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.h, err, tc.want)
		}
	}
}

func TestHealthConfigMerge(t *testing.T) {
	img := &HealthConfig{Test: []string{"CMD", "img"}, Interval: 5 * time.Second, Retries: 7}
	for _, tc := range []struct {
		name        string
		spec, image *HealthConfig
		want        *HealthConfig
	}{
		{"none", nil, nil, nil},
		{"image defaults", nil, &HealthConfig{Test: []string{"CMD", "img"}},
			&HealthConfig{Test: []string{"CMD", "img"}, Interval: 30 * time.Second, Timeout: 30 * time.Second, Retries: 3}},
		{"spec overrides test only", &HealthConfig{Test: []string{"CMD-SHELL", "x"}}, img,
			&HealthConfig{Test: []string{"CMD-SHELL", "x"}, Interval: 5 * time.Second, Timeout: 30 * time.Second, Retries: 7}},
		{"spec timing over image test", &HealthConfig{Interval: time.Second, StartPeriod: time.Minute}, img,
			&HealthConfig{Test: []string{"CMD", "img"}, Interval: time.Second, Timeout: 30 * time.Second, Retries: 7, StartPeriod: time.Minute}},
		{"spec disables", &HealthConfig{Test: []string{"NONE"}}, img, nil},
		{"image disables", nil, &HealthConfig{Test: []string{"NONE"}}, nil},
		{"timing without test", &HealthConfig{Interval: time.Second}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.spec.Merge(tc.image); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
