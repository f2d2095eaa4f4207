package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/registrytest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/treecmp"
)

func needSkopeo(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo is not installed")
	}
}

func skopeo(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("skopeo", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRegistry_Skopeo: skopeo reads what strata pushed (inspect, and copy
// to a docker-archive that strata loads back as the same image), and strata
// pulls what skopeo pushed (the fixture layout, the Debian image) as the
// image a load of the same layout makes, with the same tree.
func TestRegistry_Skopeo(t *testing.T) {
	needSkopeo(t)
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	src := storetest.Root(t)
	loadDemo(t, src)
	id := storeImageID(t, src, "demo")
	name := reg.Addr + "/demo:v1"
	mustRun(t, src, "tag", "demo", name)
	m := pushedRE.FindStringSubmatch(mustRun(t, src, "push", name))
	if m == nil {
		t.Fatal("push printed no digest")
	}
	var info struct {
		Digest string
		Layers []string
	}
	if err := json.Unmarshal([]byte(skopeo(t, "inspect", "--tls-verify=false", "docker://"+name)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Digest != m[1] || len(info.Layers) != 5 {
		t.Errorf("skopeo inspect: digest %s, %d layers; strata pushed %s, 5 layers", info.Digest, len(info.Layers), m[1])
	}
	// To a docker-archive, which keeps the config as it is (a copy to an
	// OCI layout converts docker's config to OCI's, a new ID).
	archive := filepath.Join(t.TempDir(), "back.tar")
	skopeo(t, "copy", "--src-tls-verify=false", "docker://"+name, "docker-archive:"+archive+":back:latest")
	back := storetest.Root(t)
	mustRun(t, back, "load", "-q", "-i", archive)
	if got := storeImageID(t, back, "back"); got != id {
		t.Errorf("skopeo's copy of the pushed image loads as %s, want %s", got, id)
	}

	for _, tc := range []struct{ name, layout, ref string }{
		{"fixture", filepath.Join(fixtureDir(t), "oci"), "demo"},
		{"fixture zstd", filepath.Join(fixtureDir(t), "oci-zstd"), "demo"},
		{"debian", filepath.Join(fixtures.Debian(t), "oci"), "debian"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loaded := storetest.Root(t)
			mustRun(t, loaded, "load", "-q", "-i", tc.layout)
			want := storeImageID(t, loaded, tc.ref)
			target := reg.Addr + "/skopeo/" + strings.ReplaceAll(tc.name, " ", "-") + ":1"
			skopeo(t, "copy", "--dest-tls-verify=false", "oci:"+tc.layout+":"+tc.ref, "docker://"+target)
			pulled := storetest.Root(t)
			mustRun(t, pulled, "pull", target)
			if got := storeImageID(t, pulled, target); got != want {
				t.Errorf("pulled %s, the layout loads as %s", got, want)
			}
			if diffs := treecmp.Compare(storeTree(t, loaded, tc.ref), storeTree(t, pulled, target), treecmp.Options{IgnoreInodes: true}); len(diffs) > 0 {
				t.Errorf("pulled tree differs from the loaded one:\n%s", strings.Join(diffs, "\n"))
			}
		})
	}
}

// TestRegistry_Dockerd: dockerd pulls what strata pushed as the same image
// ID, and strata pulls what dockerd pushed as the same image ID. It uses the
// tests' shared dockerd and removes its own images from it at the end.
func TestRegistry_Dockerd(t *testing.T) {
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	d := docker(t)
	src := storetest.Root(t)
	loadDemo(t, src)
	id := storeImageID(t, src, "demo")
	name := reg.Addr + "/demo:v1"
	byDocker := reg.Addr + "/bydocker:1"
	t.Cleanup(func() { d.Docker("", "rmi", name, byDocker) })
	mustRun(t, src, "tag", "demo", name)
	mustRun(t, src, "push", name)
	mustDocker(t, d, "pull", name)
	if got := strings.TrimSpace(mustDocker(t, d, "image", "inspect", "-f", "{{.Id}}", name)); got != id {
		t.Errorf("docker pulled %s, strata pushed %s", got, id)
	}

	// docker push of the image docker loaded from the fixture archive.
	mustDocker(t, d, "tag", "demo:latest", byDocker)
	mustDocker(t, d, "push", byDocker)
	dockerID := strings.TrimSpace(mustDocker(t, d, "image", "inspect", "-f", "{{.Id}}", byDocker))
	dst := storetest.Root(t)
	mustRun(t, dst, "pull", byDocker)
	if got := storeImageID(t, dst, byDocker); got != dockerID {
		t.Errorf("strata pulled %s, docker pushed %s", got, dockerID)
	}
}

// TestRegistry_RmiByDigest: rmi of a repo digest removes that reference
// only while a tag names the image, and untagging a repository's last tag
// drops its repo digests, as dockerd does: the same steps on both, the
// same "Untagged:" lines and the same RepoTags and RepoDigests after each.
func TestRegistry_RmiByDigest(t *testing.T) {
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	d := docker(t)
	src := storetest.Root(t)
	loadDemo(t, src)
	name := reg.Addr + "/rmidigest:v1"
	other := reg.Addr + "/rmidigest:other"
	keep := "rmidigest-keep:1"
	mustRun(t, src, "tag", "demo", name)
	mustRun(t, src, "push", name)
	t.Cleanup(func() { d.Docker("", "rmi", name, other, keep) })
	root := storetest.Root(t)
	mustRun(t, root, "pull", name)
	mustDocker(t, d, "pull", name)
	id := storeImageID(t, root, name)
	byDigest := reg.Addr + "/rmidigest@" + strings.TrimSpace(strings.SplitN(mustRun(t, root, "image", "inspect", "-f", "{{index .RepoDigests 0}}", name), "@", 2)[1])

	untagged := func(out string) []string {
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "Untagged: ") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	refs := `{{.RepoTags}} {{.RepoDigests}}`
	for _, step := range [][]string{
		{"tag", name, other},
		{"tag", name, keep},
		{"rmi", name},      // another tag of the repository is left: its digest stays
		{"rmi", other},     // the repository's last tag: its digest goes too
		{"pull", byDigest}, // the digest again, by digest
		{"rmi", byDigest},  // only that reference: keep:1 still names the image
	} {
		got := runStrata(t, root, "", step...)
		want := d.Docker("", step...)
		if got.err != nil || want.Code != 0 {
			t.Fatalf("%v: strata %v %s; docker exit %d %s", step, got.err, got.stderr, want.Code, want.Stderr)
		}
		if step[0] == "rmi" && !slices.Equal(untagged(got.stdout), untagged(want.Stdout)) {
			t.Errorf("%v: strata said\n%s\ndocker said\n%s", step, got.stdout, want.Stdout)
		}
		s := mustRun(t, root, "image", "inspect", "-f", refs, id)
		w := mustDocker(t, d, "image", "inspect", "-f", refs, id)
		// docker's image also has the fixture's tags (demo:latest, ...).
		if !sameRefs(s, w, reg.Addr+"/rmidigest", keep) {
			t.Errorf("after %v: strata %s docker %s", step, s, w)
		}
	}
}

// sameRefs compares the "[tags] [digests]" of two inspects, only for the
// references of repository repo and the tag keep.
func sameRefs(a, b, repo, keep string) bool {
	pick := func(s string) []string {
		var out []string
		for _, f := range strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(s)) {
			if f == keep || strings.HasPrefix(f, repo+":") || strings.HasPrefix(f, repo+"@") {
				out = append(out, f)
			}
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(pick(a), pick(b))
}
