package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
)

// imageNames is what "images" lists, as name:tag words.
func imageNames(t *testing.T, root string) string {
	t.Helper()
	return strings.Join(strings.Fields(mustRun(t, root, "images", "--format", "{{.Repository}}:{{.Tag}}")), " ")
}

// TestRmi_Steps walks docker's rmi behaviour step by step on one store,
// checking it after each step.
func TestRmi_Steps(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	cfg := readDemoConfig(t)
	var layersTopDown []string
	for _, c := range chainIDsTopDown(cfg.DiffIDs) {
		layersTopDown = append(layersTopDown, "Deleted: "+c)
	}
	objects := objectFiles(t, root)
	if objects == 0 {
		t.Fatal("no object files after load")
	}

	steps := []struct {
		name   string
		args   []string
		stdout string
		stderr string
		code   int
		images string // what images lists afterwards
	}{
		{name: "tag", args: []string{"tag", "demo", "demo:v2"}, images: "demo:latest demo:v2"},
		{name: "tag other repository", args: []string{"tag", "demo", "other/x:1"}, images: "demo:latest demo:v2 other/x:1"},
		{name: "untag one", args: []string{"rmi", "demo:v2"}, stdout: "Untagged: demo:v2\n", images: "demo:latest other/x:1"},
		{name: "ID of an image in two repositories", args: []string{"rmi", cfg.shortID()},
			stderr: fmt.Sprintf("Error: conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories\n", cfg.shortID()),
			code:   1, images: "demo:latest other/x:1"},
		{name: "untag via image rm", args: []string{"image", "rm", "other/x:1"}, stdout: "Untagged: other/x:1\n", images: "demo:latest"},
		{name: "unknown", args: []string{"rmi", "nosuch"}, stderr: "Error: No such image: nosuch:latest\n", code: 1, images: "demo:latest"},
		{name: "unknown forced", args: []string{"rmi", "-f", "nosuch"}, stderr: "Error: No such image: nosuch:latest\n", images: "demo:latest"},
		{name: "unknowns", args: []string{"image", "remove", "nosuch", "nope"},
			stderr: "Error: No such image: nosuch:latest\nError: No such image: nope:latest\n", code: 1, images: "demo:latest"},
		{name: "last tag and an unknown", args: []string{"rmi", "nosuch", "demo"},
			stdout: strings.Join(append([]string{"Untagged: demo:latest", "Deleted: " + cfg.id}, layersTopDown...), "\n") + "\n",
			stderr: "Error: No such image: nosuch:latest\n", code: 1, images: ""},
	}
	for _, st := range steps {
		r := runStrata(t, root, "", st.args...)
		if r.stdout != st.stdout || r.stderr != st.stderr || r.code != st.code {
			t.Errorf("%s: strata %s:\nstdout %q\nstderr %q\ncode %d\nwant\nstdout %q\nstderr %q\ncode %d",
				st.name, strings.Join(st.args, " "), r.stdout, r.stderr, r.code, st.stdout, st.stderr, st.code)
		}
		if got := imageNames(t, root); got != st.images {
			t.Errorf("%s: images %q, want %q", st.name, got, st.images)
		}
		storetest.CheckRoot(t, root)
	}

	df := mustRun(t, root, "system", "df")
	if !strings.Contains(df, "Stored objects: 0, 0B on disk") {
		t.Errorf("system df after the last image went:\n%s", df)
	}
	if n := objectFiles(t, root); n != 0 {
		t.Errorf("%d object files left, had %d", n, objects)
	}
	header, rows := tableRows(t, mustRun(t, root, "images"))
	if len(rows) != 0 || !slices.Equal(header, []string{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"}) {
		t.Errorf("images of an empty store: %q %q", header, rows)
	}
}

func TestRmi_Force(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	cfg := readDemoConfig(t)
	mustRun(t, root, "tag", "demo", "other/x:1")
	out := mustRun(t, root, "rmi", "-f", cfg.shortID())
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{"Untagged: demo:latest", "Untagged: other/x:1", "Deleted: " + cfg.id}
	if len(lines) != 3+len(cfg.DiffIDs) || !slices.Equal(lines[:3], want) {
		t.Errorf("rmi -f printed\n%s\nwant first %q and %d layers", out, want, len(cfg.DiffIDs))
	}
	if got := imageNames(t, root); got != "" {
		t.Errorf("images %q after rmi -f", got)
	}
}
