package main

import (
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
)

func TestTag_Normalize(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	cfg := readDemoConfig(t)
	tests := []struct {
		name    string
		args    []string
		images  string // after the step
		wantErr string
	}{
		{name: "docker.io name", args: []string{"tag", "demo", "docker.io/library/foo"}, images: "demo:latest foo:latest"},
		{name: "registry with port", args: []string{"image", "tag", "foo", "localhost:5000/app:v1"}, images: "demo:latest foo:latest localhost:5000/app:v1"},
		{name: "by ID prefix", args: []string{"tag", cfg.shortID()[:8], "bar:1"}, images: "bar:1 demo:latest foo:latest localhost:5000/app:v1"},
		{name: "retag moves", args: []string{"tag", "demo", "bar:1"}, images: "bar:1 demo:latest foo:latest localhost:5000/app:v1"},
		{name: "uppercase", args: []string{"tag", "demo", "Bad"}, wantErr: `reference "Bad"`},
		{name: "digest", args: []string{"tag", "demo", "foo@sha256:" + strings.Repeat("a", 64)}, wantErr: "refusing to create a tag with a digest reference"},
		{name: "unknown source", args: []string{"tag", "nosuch", "x"}, wantErr: "Error: No such image: nosuch:latest\n"},
		{name: "one argument", args: []string{"tag", "demo"}, wantErr: "Error: accepts 2 arg(s), received 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runStrata(t, root, "", tt.args...)
			if tt.wantErr != "" {
				if r.code != 1 || !strings.Contains(r.stderr, tt.wantErr) {
					t.Errorf("code %d, stderr %q; want 1 and %q", r.code, r.stderr, tt.wantErr)
				}
			} else if r.err != nil || r.stdout != "" {
				t.Errorf("err %v, stdout %q", r.err, r.stdout)
			}
			if tt.images != "" {
				if got := imageNames(t, root); got != tt.images {
					t.Errorf("images %q, want %q", got, tt.images)
				}
			}
			storetest.CheckRoot(t, root)
		})
	}
}
