package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
)

// onDisk is the "X on disk" of system df's objects line.
func onDisk(t *testing.T, root string) string {
	t.Helper()
	out := mustRun(t, root, "system", "df")
	m := regexp.MustCompile(`Stored objects: \d+, (\S+) on disk`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no objects line in\n%s", out)
	}
	return m[1]
}

func TestPrune_Steps(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	rootfs := filepath.Join(fixtureDir(t), "rootfs.tar")
	dangling := strings.TrimSpace(mustRun(t, root, "import", "-q", rootfs, "x:1"))
	x := strings.TrimSpace(mustRun(t, root, "import", "-q", rootfs, "x:1"))
	cfg := readDemoConfig(t)
	storetest.CheckRoot(t, root)
	xLayer := strings.TrimSpace(mustRun(t, root, "image", "inspect", "-f", "{{index .RootFS.Layers 0}}", "x:1"))
	var demoLayers []string
	for i := len(cfg.DiffIDs) - 1; i >= 0; i-- {
		demoLayers = append(demoLayers, "deleted: "+cfg.DiffIDs[i])
	}
	const danglingPrompt = "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
	const allPrompt = "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue? [y/N] "

	steps := []struct {
		name   string
		args   []string
		stdin  string
		stdout string
		images string
	}{
		{name: "say no", args: []string{"image", "prune"}, stdin: "n\n", stdout: danglingPrompt,
			images: "x:1 <none>:<none> demo:latest"},
		{name: "say nothing", args: []string{"image", "prune", "-a"}, stdin: "", stdout: allPrompt,
			images: "x:1 <none>:<none> demo:latest"},
		{name: "say yes", args: []string{"image", "prune"}, stdin: "y\n",
			// The dangling image's one layer is x:1's too: nothing to reclaim.
			stdout: danglingPrompt + "Deleted Images:\ndeleted: " + dangling + "\n\nTotal reclaimed space: 0B\n",
			images: "x:1 demo:latest"},
		{name: "nothing dangling", args: []string{"image", "prune", "-f"},
			stdout: "Total reclaimed space: 0B\n", images: "x:1 demo:latest"},
	}
	for _, st := range steps {
		r := runStrata(t, root, st.stdin, st.args...)
		if r.err != nil || r.stdout != st.stdout {
			t.Errorf("%s: %v\nstdout %q\nwant   %q", st.name, r.err, r.stdout, st.stdout)
		}
		if got := imageNames(t, root); got != st.images {
			t.Errorf("%s: images %q, want %q", st.name, got, st.images)
		}
		storetest.CheckRoot(t, root)
	}

	space := onDisk(t, root)
	out := mustRun(t, root, "image", "prune", "-a", "-f")
	want := "Deleted Images:\n" +
		"untagged: x:1\ndeleted: " + x + "\ndeleted: " + xLayer + "\n" +
		"untagged: demo:latest\ndeleted: " + cfg.id + "\n" + strings.Join(demoLayers, "\n") + "\n" +
		"\nTotal reclaimed space: " + space + "\n"
	if out != want {
		t.Errorf("prune -a -f:\n%s\nwant\n%s", out, want)
	}
	if n := objectFiles(t, root); n != 0 {
		t.Errorf("%d object files left", n)
	}
	if got := onDisk(t, root); got != "0B" {
		t.Errorf("df says %s on disk", got)
	}
}
