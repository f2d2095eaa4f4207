package main

// Output parity with docker 20.10: the same archives are loaded into a real
// dockerd, started once for this package with its own data-root
// (internal/dockertest), and into a strata store, and each test compares
// what the two print. Where dockerd cannot run, the tests are skipped with
// the reason.

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/strata-dev/strata/internal/dockertest"
	"github.com/strata-dev/strata/internal/fixtures"

	"github.com/strata-dev/strata/internal/storetest"
)

// sharedDocker is the package's dockerd, started by the first test that
// needs it and stopped by TestMain.
var sharedDocker struct {
	once sync.Once
	d    *dockertest.Daemon
	err  error
}

// stopDocker stops the shared dockerd if a test started it.
func stopDocker() {
	if sharedDocker.d != nil {
		sharedDocker.d.Close()
	}
}

// docker returns the shared dockerd with the fixture images loaded
// (demo:latest and debian:bookworm, from their docker-archives), skipping t
// where dockerd cannot run.
func docker(t *testing.T) *dockertest.Daemon {
	t.Helper()
	demo := filepath.Join(fixtures.Dir(t), "demo.docker.tar")
	debian := filepath.Join(fixtures.Debian(t), "debian.docker.tar")
	sharedDocker.once.Do(func() {
		dir, err := os.MkdirTemp("", "strata-dockerd-")
		if err != nil {
			sharedDocker.err = err
			return
		}
		d, err := dockertest.Start(dir) // removes dir when it fails or closes
		if err != nil {
			sharedDocker.err = err
			return
		}
		sharedDocker.d = d
		for _, a := range []string{demo, debian} {
			if r := d.Docker("", "load", "-q", "-i", a); r.Code != 0 {
				sharedDocker.err = errors.New("docker load " + a + ": " + r.Stderr)
				return
			}
		}
	})
	if errors.Is(sharedDocker.err, dockertest.ErrUnavailable) {
		t.Skip(sharedDocker.err)
	}
	if sharedDocker.err != nil {
		t.Fatal(sharedDocker.err)
	}
	return sharedDocker.d
}

// mustDocker runs docker and fails the test unless it succeeds.
func mustDocker(t *testing.T, d *dockertest.Daemon, args ...string) string {
	t.Helper()
	r := d.Docker("", args...)
	if r.Code != 0 {
		t.Fatalf("docker %s: exit %d\n%s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r.Stdout
}

// parityStore is a strata store holding what docker(t) holds.
func parityStore(t *testing.T) string {
	t.Helper()
	root := storetest.Root(t)
	mustRun(t, root, "load", "-q", "-i", filepath.Join(fixtures.Dir(t), "demo.docker.tar"))
	mustRun(t, root, "load", "-q", "-i", filepath.Join(fixtures.Debian(t), "debian.docker.tar"))
	return root
}

// inspectJSON decodes one image inspect document.
func inspectJSON(t *testing.T, who, out string) map[string]any {
	t.Helper()
	var docs []map[string]any
	if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) != 1 {
		t.Fatalf("%s inspect: %v, %d documents:\n%s", who, err, len(docs), out)
	}
	return docs[0]
}

// topKeys lists the top-level keys of an inspect document in its order.
func topKeys(out string) []string {
	var keys []string
	for _, m := range regexp.MustCompile(`(?m)^        "(\w+)":`).FindAllStringSubmatch(out, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

// TestDocker_ImageInspect: every field docker prints, in docker's order,
// with docker's value, for both fixture images; then tag sets
// Metadata.LastTagTime in both. GraphDriver's data is the driver's own
// (overlay2 directories there, strata's chain ID here) and RepoDigests are a
// registry's to give: those two are compared by shape only.
func TestDocker_ImageInspect(t *testing.T) {
	d := docker(t)
	root := parityStore(t)
	for _, img := range []string{"demo:latest", "debian:bookworm"} {
		dout := mustDocker(t, d, "image", "inspect", img)
		sout := mustRun(t, root, "image", "inspect", img)
		if dk, sk := topKeys(dout), topKeys(sout); !slices.Equal(dk, sk) {
			t.Errorf("%s: keys\nstrata %q\ndocker %q", img, sk, dk)
		}
		dd, sd := inspectJSON(t, "docker", dout), inspectJSON(t, "strata", sout)
		for k, dv := range dd {
			sv, ok := sd[k]
			switch {
			case !ok:
				t.Errorf("%s: strata has no %s (docker: %v)", img, k, dv)
			case k == "GraphDriver":
				if _, ok := sv.(map[string]any)["Data"]; !ok {
					t.Errorf("%s: GraphDriver %v has no Data", img, sv)
				}
			case k == "RepoDigests":
				if _, ok := sv.([]any); !ok {
					t.Errorf("%s: RepoDigests %v is not a list", img, sv)
				}
			case !reflect.DeepEqual(sv, dv):
				t.Errorf("%s: %s\nstrata %v\ndocker %v", img, k, sv, dv)
			}
		}
		for _, f := range []string{"{{.VirtualSize}}", "{{.ContainerConfig.Cmd}}", "{{json .ContainerConfig}}", "{{.Container}}", "{{.Comment}}", "{{.Metadata.LastTagTime}}"} {
			if got, want := mustRun(t, root, "image", "inspect", "-f", f, img), mustDocker(t, d, "image", "inspect", "-f", f, img); got != want {
				t.Errorf("%s -f %s: strata %q, docker %q", img, f, got, want)
			}
		}
	}

	const tagTime = "{{.Metadata.LastTagTime.IsZero}}"
	mustDocker(t, d, "tag", "demo", "parity:tagged")
	t.Cleanup(func() { d.Docker("", "rmi", "parity:tagged") })
	mustRun(t, root, "tag", "demo", "parity:tagged")
	for _, img := range []string{"demo", "parity:tagged"} {
		got, want := mustRun(t, root, "image", "inspect", "-f", tagTime, img), mustDocker(t, d, "image", "inspect", "-f", tagTime, img)
		if got != "false\n" || got != want {
			t.Errorf("LastTagTime zero after tag: strata %q, docker %q", got, want)
		}
	}
}

// TestDocker_Import_Comment: an import with -m shows its message as the
// image's Comment and in history, as docker's does.
func TestDocker_Import_Comment(t *testing.T) {
	d := docker(t)
	root := storetest.Root(t)
	rootfs := filepath.Join(fixtures.Dir(t), "rootfs.tar")
	mustDocker(t, d, "import", "-m", "imported for parity", rootfs, "parity:imported")
	t.Cleanup(func() { d.Docker("", "rmi", "parity:imported") })
	mustRun(t, root, "import", "-q", "-m", "imported for parity", rootfs, "parity:imported")
	for _, f := range []string{"{{.Comment}}", "{{.Size}} {{.VirtualSize}}", "{{json .ContainerConfig}}", "{{.Metadata.LastTagTime.IsZero}}", "{{len .RootFS.Layers}}", "{{json .RootFS.Layers}}"} {
		if got, want := mustRun(t, root, "image", "inspect", "-f", f, "parity:imported"), mustDocker(t, d, "image", "inspect", "-f", f, "parity:imported"); got != want {
			t.Errorf("-f %s: strata %q, docker %q", f, got, want)
		}
	}
	f := "{{.Size}}\t{{.Comment}}"
	if got, want := mustRun(t, root, "history", "--format", f, "parity:imported"), mustDocker(t, d, "history", "--format", f, "parity:imported"); got != want {
		t.Errorf("history: strata %q, docker %q", got, want)
	}
}

// TestDocker_ListingsAndDf: images, history and system df's Images row say
// the same sizes as docker's for the same two images.
func TestDocker_ListingsAndDf(t *testing.T) {
	d := docker(t)
	root := parityStore(t)
	for _, args := range [][]string{
		{"images", "--format", "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}", "demo"},
		{"images", "--format", "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}", "debian"},
		{"history", "--no-trunc", "--format", "{{.ID}} {{.CreatedBy}} {{.Size}} {{.Comment}}", "demo"},
		{"history", "--format", "{{.ID}} {{.Size}}", "debian:bookworm"},
	} {
		if got, want := mustRun(t, root, args...), mustDocker(t, d, args...); got != want {
			t.Errorf("%s:\nstrata %q\ndocker %q", strings.Join(args, " "), got, want)
		}
	}
	// docker's daemon holds only the fixture images here (others' tests
	// remove what they add), so its Images row is theirs.
	f := "{{.Type}} {{.TotalCount}} {{.Size}} {{.Reclaimable}}"
	dRows := strings.Split(mustDocker(t, d, "system", "df", "--format", f), "\n")
	sRows := strings.Split(mustRun(t, root, "system", "df", "--format", f), "\n")
	if dRows[0] != sRows[0] || !strings.HasPrefix(dRows[0], "Images 2 ") {
		t.Errorf("system df Images: strata %q, docker %q", sRows[0], dRows[0])
	}
}

// TestDocker_RmiAndPrune: the lines rmi and prune print (untagged names,
// the image ID, each deleted layer by chain ID, top first) and prune's
// reclaimed figure are docker's.
func TestDocker_RmiAndPrune(t *testing.T) {
	d := docker(t)
	root := parityStore(t)
	demo := filepath.Join(fixtures.Dir(t), "demo.docker.tar")
	debian := filepath.Join(fixtures.Debian(t), "debian.docker.tar")
	t.Cleanup(func() {
		d.Docker("", "load", "-q", "-i", demo)
		d.Docker("", "load", "-q", "-i", debian)
	})

	mustDocker(t, d, "tag", "demo", "parity:two")
	mustRun(t, root, "tag", "demo", "parity:two")
	for _, args := range [][]string{{"rmi", "parity:two"}, {"rmi", "demo"}} {
		if got, want := mustRun(t, root, args...), mustDocker(t, d, args...); got != want {
			t.Errorf("%s:\nstrata %q\ndocker %q", strings.Join(args, " "), got, want)
		}
	}
	mustDocker(t, d, "load", "-q", "-i", demo)
	mustRun(t, root, "load", "-q", "-i", demo)
	args := []string{"image", "prune", "-a", "-f"}
	got, want := mustRun(t, root, args...), mustDocker(t, d, args...)
	// Images may come in another order: compare each image's block. docker's
	// total is a prefix of strata's, which adds the bytes freed on disk.
	blocks := func(out string) (images []string, total string) {
		body, total, _ := strings.Cut(out, "\n\nTotal reclaimed space: ")
		prev := ""
		for _, b := range strings.SplitAfter(body+"\n", "\n") {
			// An image's block starts with its first "untagged:" line.
			if strings.HasPrefix(b, "untagged: ") && !strings.HasPrefix(prev, "untagged: ") {
				images = append(images, "")
			}
			if len(images) > 0 {
				images[len(images)-1] += b
			}
			prev = b
		}
		slices.Sort(images)
		return images, strings.TrimSpace(total)
	}
	gi, gt := blocks(got)
	wi, wt := blocks(want)
	if !slices.Equal(gi, wi) || !strings.HasPrefix(gt, wt+" (") || !strings.HasPrefix(got, "Deleted Images:\n") {
		t.Errorf("prune -a -f:\nstrata %q\ndocker %q", got, want)
	}
}

// TestDocker_Errors: what a missing image or a bad name prints, and the
// exit status, as docker's (docker prefixes "Error response from daemon: "
// to what its daemon says; strata prints "Error: ").
func TestDocker_Errors(t *testing.T) {
	d := docker(t)
	root := parityStore(t)
	norm := func(s string) string {
		s = strings.ReplaceAll(s, "Error response from daemon: ", "Error: ")
		return strings.TrimSpace(s)
	}
	for _, args := range [][]string{
		{"rmi", "nope"},
		{"rmi", "-f", "nosuch"}, // docker 20.10 reports it and exits 0
		{"rmi", "nope:v1", "nosuch"},
		{"history", "nope"},
		{"tag", "nope", "x"},
		{"image", "inspect", "-f", "{{.Id}}", "nope", "demo"},
		{"inspect", "-f", "{{.Id}}", "nope", "demo"}, // neither a container nor an image
	} {
		g, w := runStrata(t, root, "", args...), d.Docker("", args...)
		if g.code != w.Code || norm(g.stderr) != norm(w.Stderr) || g.stdout != w.Stdout {
			// docker's CLI 28 words "image inspect" errors its own way; the
			// daemon's text (after the last ": ") is docker 20.10's.
			if args[0] == "image" && g.code == w.Code && g.stdout == w.Stdout && strings.HasSuffix(norm(w.Stderr), strings.TrimPrefix(norm(g.stderr), "Error: ")) {
				continue
			}
			t.Errorf("%s:\nstrata %d %q %q\ndocker %d %q %q", strings.Join(args, " "), g.code, g.stdout, g.stderr, w.Code, w.Stdout, w.Stderr)
		}
	}
}
