package dns

import "testing"

func TestTaskResolvConf(t *testing.T) {
	for _, tt := range []struct {
		search, options []string
		want            string
	}{
		{nil, nil, ResolvConf},
		{[]string{"a.example", "b"}, []string{"timeout:2"}, "nameserver 127.0.0.11\nsearch a.example b\noptions ndots:0 timeout:2\n"},
		{nil, []string{"ndots:3"}, "nameserver 127.0.0.11\noptions ndots:3\n"},
	} {
		if got := TaskResolvConf(tt.search, tt.options); got != tt.want {
			t.Errorf("TaskResolvConf(%q, %q) = %q, want %q", tt.search, tt.options, got, tt.want)
		}
	}
}
