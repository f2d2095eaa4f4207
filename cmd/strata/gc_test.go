package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

func TestGC_StaleMount(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	m := addMount(t, root, "m-stale", "demo", 0) // no server: stale

	r := runStrata(t, root, "", "check")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("garbage: mount m-stale at %s: server %d is gone", m.Dir, m.PID)) {
		t.Errorf("check: code %d, %q", r.code, r.stdout)
	}
	_, rows := tableRows(t, strings.SplitN(mustRun(t, root, "system", "df"), "\n\n", 2)[0])
	if want := []string{"Mounts", "1", "0"}; !slices.Equal(rows[3][:3], want) || rows[3][3] == "0B" || rows[3][3]+" (100%)" != rows[3][4] {
		t.Errorf("df Mounts row %q: want a stale mount whose space is all reclaimable", rows[3])
	}
	if !strings.Contains(mustRun(t, root, "system", "df", "-v"), "stale (server gone)") {
		t.Errorf("df -v does not show the stale mount")
	}

	out := mustRun(t, root, "gc")
	if !regexp.MustCompile(`^Dropped stale mount: m-stale\nTotal reclaimed space: [0-9.]+kB\n$`).MatchString(out) {
		t.Errorf("gc printed %q", out)
	}
	if _, err := os.Stat(root + "/mounts/m-stale"); !os.IsNotExist(err) {
		t.Errorf("mount directory left: %v", err)
	}
	if got := imageNames(t, root); got != "demo:latest" {
		t.Errorf("images %q after gc", got)
	}
	if out := mustRun(t, root, "gc"); out != "Total reclaimed space: 0B\n" {
		t.Errorf("second gc printed %q", out)
	}
}

// A live mount (this process stands in for its server) keeps its image from
// prune and rmi, and counts as active in df.
func TestGC_LiveMount(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	m := addMount(t, root, "m-live", "demo", os.Getpid())
	t.Cleanup(func() { // before the store is checked
		s, err := layerstore.Open(root, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveMount(m.ID); err != nil {
			t.Error(err)
		}
	})
	_, rows := tableRows(t, strings.SplitN(mustRun(t, root, "system", "df"), "\n\n", 2)[0])
	if rows[0][2] != "1" || rows[0][4] != "0B (0%)" || rows[3][2] != "1" || rows[4][2] != "5" {
		t.Errorf("df %q: want the image, the mount and 5 layers active, nothing reclaimable", rows)
	}
	r := runStrata(t, root, "", "rmi", "demo")
	if r.code != 1 || r.stderr != "Error: conflict: unable to delete demo (must be forced) - image is in use by the mount at "+m.Dir+"\n" {
		t.Errorf("rmi: code %d, stderr %q", r.code, r.stderr)
	}
	if out := mustRun(t, root, "image", "prune", "-a", "-f"); out != "Total reclaimed space: 0B\n" {
		t.Errorf("prune -a printed %q", out)
	}
	if out := mustRun(t, root, "gc"); out != "Total reclaimed space: 0B\n" {
		t.Errorf("gc printed %q", out)
	}
	if got := imageNames(t, root); got != "demo:latest" {
		t.Errorf("images %q", got)
	}
}
