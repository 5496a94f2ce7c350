package stack

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSampleStacks loads stack files shaped like well-known public sample
// applications (testdata/samples/README.md names them) with images at a
// test registry: each either converts, or fails naming every key Shoal
// does not support, with its file and line.
func TestSampleStacks(t *testing.T) {
	tests := []struct {
		file string
		// wantErr are the lines of the error, in order; nil: it converts.
		wantErr []string
	}{
		{file: "getstarted.yml"},
		{
			file: "voting-app.yml",
			wantErr: []string{
				"services.redis: ports: target 6379: no published port: Shoal does not pick one (write PUBLISHED:6379)",
			},
		},
		{file: "portainer-agent.yml"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			file := filepath.Join("testdata", "samples", tt.file)
			l, err := Load(context.Background(), Options{Files: []string{file}, Namespace: "sample", Env: []string{"REG=reg.test:5000"}})
			if err == nil {
				_, err = Convert(l.Project, "sample")
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("converted: want %q", tt.wantErr)
			}
			var got []string
			for _, line := range strings.Split(err.Error(), "\n") {
				got = append(got, strings.TrimPrefix(line, filepath.Join("testdata", "samples")+"/"))
			}
			if !slices.Equal(got, tt.wantErr) {
				t.Errorf("error:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.wantErr, "\n"))
			}
		})
	}
}
