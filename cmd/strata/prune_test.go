package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
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
	for _, c := range chainIDsTopDown(cfg.DiffIDs) {
		demoLayers = append(demoLayers, "deleted: "+c)
	}
	const danglingPrompt = "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "

	// Asked on a terminal: the answer is typed at it.
	screen, err := runStrataTyping(t, root, "n\n", "image", "prune")
	screen = strings.ReplaceAll(screen, "\r\n", "\n")
	if err != nil || !strings.Contains(screen, danglingPrompt) || strings.Contains(screen, "Deleted") {
		t.Errorf("say no: %v\n%q", err, screen)
	}
	if got := imageNames(t, root); got != "x:1 <none>:<none> demo:latest" {
		t.Errorf("say no: images %q", got)
	}
	// Not a terminal, no -f: refused, nothing removed.
	r := runStrata(t, root, "", "image", "prune", "-a")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "standard input is not a terminal: add -f (--force)") {
		t.Errorf("prune without a terminal: code %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	if got := imageNames(t, root); got != "x:1 <none>:<none> demo:latest" {
		t.Errorf("prune without a terminal: images %q", got)
	}
	storetest.CheckRoot(t, root)
	screen, err = runStrataTyping(t, root, "y\n", "image", "prune")
	screen = strings.ReplaceAll(screen, "\r\n", "\n")
	// The dangling image's one layer is x:1's too: nothing to reclaim.
	want := "Deleted Images:\ndeleted: " + dangling + "\n\nTotal reclaimed space: 0B\n"
	if err != nil || !strings.Contains(screen, danglingPrompt) || !strings.HasSuffix(screen, want) {
		t.Errorf("say yes: %v\n%q\nwant suffix %q", err, screen, want)
	}
	if got := imageNames(t, root); got != "x:1 demo:latest" {
		t.Errorf("say yes: images %q", got)
	}
	if got := mustRun(t, root, "image", "prune", "-f"); got != "Total reclaimed space: 0B\n" {
		t.Errorf("nothing dangling: %q", got)
	}
	storetest.CheckRoot(t, root)

	// docker's figure (the deleted layers' content: x:1's layer and demo's)
	// first, then what strata freed on disk, less as files are stored once.
	space := onDisk(t, root)
	content := humanSize(demoSize(t, root)+layerSize(t, root, "x:1"), 4)
	out := mustRun(t, root, "image", "prune", "-a", "-f")
	want = "Deleted Images:\n" +
		"untagged: x:1\ndeleted: " + x + "\ndeleted: " + xLayer + "\n" +
		"untagged: demo:latest\ndeleted: " + cfg.id + "\n" + strings.Join(demoLayers, "\n") + "\n" +
		"\nTotal reclaimed space: " + content + " (" + space + " on disk, where each file content is stored once)\n"
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

// chainIDsTopDown is docker's name of each layer of an image, its chain ID,
// from the top layer down: how rmi and prune print deleted layers.
func chainIDsTopDown(diffIDs []string) []string {
	var ds []digest.Digest
	for _, d := range diffIDs {
		ds = append(ds, digest.Digest(d))
	}
	var out []string
	for i := len(ds); i > 0; i-- {
		out = append(out, identity.ChainID(ds[:i]).String())
	}
	return out
}

// layerSize is the content size of an image's layers, as inspect says.
func layerSize(t *testing.T, root, ref string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(mustRun(t, root, "image", "inspect", "-f", "{{.Size}}", ref)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
