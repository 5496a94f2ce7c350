package containerd

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

func TestParseImageHealthcheck(t *testing.T) {
	for _, tc := range []struct {
		name, blob string
		want       *api.HealthConfig
		err        string
	}{
		{"none", `{"config":{"Cmd":["sh"]}}`, nil, ""},
		{"docker's", `{"config":{"Healthcheck":{"Test":["CMD-SHELL","wget -q localhost || exit 1"],"Interval":2000000000,"Timeout":1000000000,"StartPeriod":5000000000,"Retries":4}}}`,
			&api.HealthConfig{Test: []string{"CMD-SHELL", "wget -q localhost || exit 1"}, Interval: 2 * time.Second, Timeout: time.Second, StartPeriod: 5 * time.Second, Retries: 4}, ""},
		{"NONE", `{"config":{"Healthcheck":{"Test":["NONE"]}}}`, &api.HealthConfig{Test: []string{"NONE"}}, ""},
		{"bad test", `{"config":{"Healthcheck":{"Test":["RUN","x"]}}}`, nil, `"RUN"`},
		{"garbage", `{`, nil, "image config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseImageHealthcheck([]byte(tc.blob))
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error: got %v, want %q", err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	b := &boundedBuffer{max: 4}
	b.Write([]byte("abc"))
	if n, _ := b.Write([]byte("def")); n != 3 || b.String() != "abcd" {
		t.Fatalf("bounded buffer: wrote %d, holds %q; want 3, abcd", n, b.String())
	}
}
