package main

import (
	"strings"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/storetest"
)

// rmi -f of a mounted image, then umount: nothing of it stays behind,
// unseen by images, counted by df and ignored by check.
func TestRmi_ForcedWhileMounted_UmountLeavesNothing(t *testing.T) {
	root := storetest.Root(t)
	loadDemo(t, root)
	dir, done := startMount(t, root)
	mustRun(t, root, "rmi", "-f", "demo")
	if out := mustRun(t, root, "images", "-a", "-q"); out != "" {
		t.Errorf("images -a after rmi -f: %q", out)
	}
	// The mount still works: the lease holds what it shows.
	if out := mustRun(t, root, "check"); !strings.Contains(out, "0 problems, 0 pieces of garbage") {
		t.Errorf("check while mounted:\n%s", out)
	}
	mustRun(t, root, "umount", dir)
	select {
	case r := <-done:
		if r.err != nil {
			t.Errorf("mount command: %v\n%s", r.err, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mount command did not end after umount")
	}
	out := mustRun(t, root, "check")
	if !strings.Contains(out, "0 images, 0 layers, 0 trees, 0 objects, 0 mounts: 0 problems, 0 pieces of garbage") {
		t.Errorf("check after umount:\n%s", out)
	}
	if n := objectFiles(t, root); n != 0 {
		t.Errorf("%d object files left", n)
	}
	df := mustRun(t, root, "system", "df", "--format", "{{.Type}}|{{.TotalCount}}|{{.Size}}")
	for _, line := range strings.Split(strings.TrimSpace(df), "\n") {
		if f := strings.Split(line, "|"); len(f) != 3 || f[1] != "0" || f[2] != "0B" {
			t.Errorf("df after umount counts something: %q", line)
		}
	}
	if out := mustRun(t, root, "gc"); strings.Contains(out, "layer") {
		t.Errorf("gc found layers umount left:\n%s", out)
	}
}
