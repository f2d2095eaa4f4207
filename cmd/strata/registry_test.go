package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand"
	"time"

	"github.com/opencontainers/go-digest"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/registrytest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/treecmp"
	"github.com/strata-dev/strata/layerstore"
)

// registryEnv points docker's config (credentials) and strata's config
// (certs.d, registries.json) at directories of the test's own.
func registryEnv(t *testing.T) (dockerDir, strataDir string) {
	t.Helper()
	dockerDir, strataDir = filepath.Join(t.TempDir(), "docker"), filepath.Join(t.TempDir(), "strata")
	t.Setenv("DOCKER_CONFIG", dockerDir)
	t.Setenv("STRATA_CONFIG", strataDir)
	return dockerDir, strataDir
}

// storeImageID is the ID ref names in the store at root.
func storeImageID(t *testing.T, root, ref string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, root, "image", "inspect", "-f", "{{.Id}}", ref))
}

// storeTree is the merged tree of image ref in the store at root.
func storeTree(t *testing.T, root, ref string) *treecmp.Tree {
	t.Helper()
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, tree, err := s.ImageTree(ref)
	if err != nil {
		t.Fatal(err)
	}
	return treecmp.FromLayerTree(tree)
}

var pushedRE = regexp.MustCompile(`(?m)^v1: digest: (sha256:[0-9a-f]{64}) size: [0-9]+$`)

// TestRegistry_PushPull pushes the demo image to a real registry and pulls
// it into an empty store: same image ID, same tree (mounted), the digest
// recorded on both sides; a second push finds every layer there, a push to
// another repository mounts them, a second pull downloads nothing.
func TestRegistry_PushPull(t *testing.T) {
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	proxy := registrytest.StartProxy(t, reg.URL())
	src, dst := storetest.Root(t), storetest.Root(t)
	loadDemo(t, src)
	id := storeImageID(t, src, "demo")
	name := proxy.Addr + "/demo:v1"
	mustRun(t, src, "tag", "demo", name)

	out := mustRun(t, src, "push", name)
	if !strings.HasPrefix(out, "The push refers to repository ["+proxy.Addr+"/demo]\n") || strings.Count(out, ": Pushed\n") != 5 {
		t.Errorf("push printed:\n%s", out)
	}
	m := pushedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("push printed no digest line:\n%s", out)
	}
	dgst := m[1]
	if got := mustRun(t, src, "images", "--digests", "--format", "{{.Repository}} {{.Digest}}", proxy.Addr+"/demo"); got != proxy.Addr+"/demo "+dgst+"\n" {
		t.Errorf("images --digests after push: %q", got)
	}
	up := proxy.BlobUploadBytes.Load()

	out = mustRun(t, src, "push", name)
	if strings.Count(out, ": Layer already exists\n") != 5 || !strings.Contains(out, "v1: digest: "+dgst+" size:") {
		t.Errorf("second push printed:\n%s", out)
	}
	mustRun(t, src, "tag", "demo", proxy.Addr+"/other:v1")
	out = mustRun(t, src, "push", proxy.Addr+"/other:v1")
	if strings.Count(out, ": Mounted from demo\n") != 5 {
		t.Errorf("push to another repository printed:\n%s", out)
	}
	if got := proxy.BlobUploadBytes.Load(); got != up+0 && got-up > 64<<10 {
		t.Errorf("second push and the mount uploaded %d bytes of blobs", got-up)
	}

	out = mustRun(t, dst, "pull", name)
	for _, want := range []string{"v1: Pulling from demo\n", ": Pull complete\n", "Digest: " + dgst + "\n",
		"Status: Downloaded newer image for " + name + "\n", name + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	// Without a terminal, as docker's CLI: each layer's statuses in
	// order, none of those that come with a bar.
	perLayer := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if id, st, ok := strings.Cut(l, ": "); ok && len(id) == 12 {
			perLayer[id] = append(perLayer[id], st)
		}
	}
	if len(perLayer) != 5 {
		t.Errorf("pull printed lines for %d layers, want 5:\n%s", len(perLayer), out)
	}
	for id, sts := range perLayer {
		if want := []string{"Pulling fs layer", "Verifying Checksum", "Download complete", "Pull complete"}; !slices.Equal(sts, want) {
			t.Errorf("layer %s: %q, want %q", id, sts, want)
		}
	}
	if got := storeImageID(t, dst, name); got != id {
		t.Errorf("pulled image ID %s, pushed %s", got, id)
	}
	if got := strings.TrimSpace(mustRun(t, dst, "image", "inspect", "-f", "{{json .RepoDigests}}", name)); got != `["`+proxy.Addr+`/demo@`+dgst+`"]` {
		t.Errorf("RepoDigests after pull: %s", got)
	}
	want := storeTree(t, src, "demo")
	if diffs := treecmp.Compare(want, storeTree(t, dst, name), treecmp.Options{IgnoreInodes: true}); len(diffs) > 0 {
		t.Errorf("pulled tree differs from the pushed one:\n%s", strings.Join(diffs, "\n"))
	}
	if os.Geteuid() == 0 {
		dir, _ := startMountImage(t, dst, name, "--read-only")
		got, err := treecmp.Snapshot(dir, treecmp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if diffs := treecmp.Compare(want, got, treecmp.Options{IgnoreInodes: true, IgnoreRoot: true}); len(diffs) > 0 {
			t.Errorf("mount of the pulled image differs from the pushed tree:\n%s", strings.Join(diffs, "\n"))
		}
		mustRun(t, dst, "umount", dir)
	}

	before := proxy.BlobBytes.Load()
	out = mustRun(t, dst, "pull", name)
	if strings.Count(out, ": Already exists\n") != 5 || !strings.Contains(out, "Status: Image is up to date for "+name+"\n") {
		t.Errorf("second pull printed:\n%s", out)
	}
	if got := proxy.BlobBytes.Load() - before; got > 64<<10 {
		t.Errorf("second pull moved %d blob bytes", got)
	}

	// By digest: no tag, a row of its own under the repository.
	fresh := storetest.Root(t)
	mustRun(t, fresh, "pull", proxy.Addr+"/demo@"+dgst)
	if got := mustRun(t, fresh, "images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}"); got != proxy.Addr+"/demo <none> "+dgst+"\n" {
		t.Errorf("images after a pull by digest: %q", got)
	}
	if got := storeImageID(t, fresh, proxy.Addr+"/demo@"+dgst); got != id {
		t.Errorf("image by repo digest: %s, want %s", got, id)
	}
}

// TestRegistry_BasePresent pulls an image whose base layers the store has:
// only the new layer's bytes move.
func TestRegistry_BasePresent(t *testing.T) {
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	proxy := registrytest.StartProxy(t, reg.URL())
	src, dst := storetest.Root(t), storetest.Root(t)
	loadDemo(t, src)
	// A child image: the demo plus one layer.
	child := addLayer(t, src, "demo", proxy.Addr+"/demo:child")
	mustRun(t, src, "tag", "demo", proxy.Addr+"/demo:base")
	mustRun(t, src, "push", proxy.Addr+"/demo:base")
	mustRun(t, src, "push", proxy.Addr+"/demo:child")

	mustRun(t, dst, "pull", proxy.Addr+"/demo:base")
	before := proxy.BlobBytes.Load()
	out := mustRun(t, dst, "pull", proxy.Addr+"/demo:child")
	moved := proxy.BlobBytes.Load() - before
	if strings.Count(out, ": Already exists\n") != 5 || strings.Count(out, ": Pull complete\n") != 1 {
		t.Errorf("pull of the child printed:\n%s", out)
	}
	if moved > child.blobSize+64<<10 {
		t.Errorf("pull of the child moved %d blob bytes; its new layer is %d", moved, child.blobSize)
	}
	if got := storeImageID(t, dst, proxy.Addr+"/demo:child"); got != child.id {
		t.Errorf("child ID %s, want %s", got, child.id)
	}
}

// manifestOf fetches a manifest from a registry by HTTP, as a test's own
// look at what was pushed.
func manifestOf(t *testing.T, base, repo, ref string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// childImage is an image made by addLayer.
type childImage struct {
	id       string
	blobSize int64 // of its new layer, gzip-compressed as a push sends it (bounded above by the tar)
}

// addLayer stores, as name, the image base plus one layer holding one
// 256 KiB file: a child image as a build would make it.
func addLayer(t *testing.T, root, base, name string) childImage {
	t.Helper()
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	img, err := s.ResolveImage(base)
	if err != nil {
		t.Fatal(err)
	}
	src, err := s.ImageSource(&img)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := make([]byte, 256<<10)
	rand.New(rand.NewSource(1)).Read(content)
	tw.WriteHeader(&tar.Header{Name: "added.bin", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)})
	tw.Write(content)
	tw.Close()
	layer := buf.Bytes()
	diffID := digest.FromBytes(layer)
	var cfg map[string]any
	if err := json.Unmarshal(img.ConfigRaw, &cfg); err != nil {
		t.Fatal(err)
	}
	rootfs := cfg["rootfs"].(map[string]any)
	rootfs["diff_ids"] = append(rootfs["diff_ids"].([]any), diffID.String())
	if h, ok := cfg["history"].([]any); ok {
		cfg["history"] = append(h, map[string]any{"created_by": "test: add added.bin"})
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	child := &layerstore.ImageSource{Names: []string{name}, ConfigRaw: raw, Layers: append(src.Layers, layerstore.LayerBlob{
		Digest: diffID, Size: int64(len(layer)), DiffID: diffID,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil },
	})}
	stored, err := s.AddImage(context.Background(), child, nil)
	if err != nil {
		t.Fatal(err)
	}
	return childImage{id: stored.ID.String(), blobSize: int64(len(layer))}
}

// TestRegistry_ProgressOnATerminal pulls and pushes with stdout on a
// pseudo-terminal: per-layer lines rewritten in place, with bars.
func TestRegistry_ProgressOnATerminal(t *testing.T) {
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	src := storetest.Root(t)
	loadDemo(t, src)
	name := reg.Addr + "/demo:v1"
	mustRun(t, src, "tag", "demo", name)
	screen, err := runStrataTTY(t, src, "push", name)
	if err != nil {
		t.Fatalf("push on a terminal: %v\n%q", err, screen)
	}
	for _, want := range []string{"Pushing [", "\x1b[", ": Pushed", "v1: digest: sha256:"} {
		if !strings.Contains(screen, want) {
			t.Errorf("push on a terminal lacks %q:\n%q", want, screen)
		}
	}
	screen, err = runStrataTTY(t, storetest.Root(t), "pull", name)
	if err != nil {
		t.Fatalf("pull on a terminal: %v\n%q", err, screen)
	}
	for _, want := range []string{"Downloading [", ": Verifying Checksum", ": Download complete", "Extracting [", "\x1b[", ": Pull complete", "Status: Downloaded newer image for " + name} {
		if !strings.Contains(screen, want) {
			t.Errorf("pull on a terminal lacks %q:\n%q", want, screen)
		}
	}
	if strings.Count(screen, "Pull complete") != 5 {
		t.Errorf("pull on a terminal: %d Pull complete, want 5 (one line per layer):\n%q", strings.Count(screen, "Pull complete"), screen)
	}
}

// TestRegistry_AllTags: push -a pushes every tag of the repository, pull -a
// pulls every tag the registry has; push of a name the store lacks says so.
func TestRegistry_AllTags(t *testing.T) {
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	src := storetest.Root(t)
	loadDemo(t, src)
	repo := reg.Addr + "/tags"
	r := runStrata(t, src, "", "push", repo+":v1")
	if r.err == nil || !strings.Contains(r.stderr, "An image does not exist locally with the tag: "+repo) {
		t.Errorf("push of an untagged name: %v\n%s", r.err, r.stderr)
	}
	mustRun(t, src, "tag", "demo", repo+":v1")
	mustRun(t, src, "tag", "demo", repo+":v2")
	out := mustRun(t, src, "push", "-a", repo)
	if !strings.Contains(out, "v1: digest: sha256:") || !strings.Contains(out, "v2: digest: sha256:") {
		t.Errorf("push -a printed:\n%s", out)
	}
	dst := storetest.Root(t)
	mustRun(t, dst, "pull", "-a", repo)
	if got := mustRun(t, dst, "images", "--format", "{{.Repository}}:{{.Tag}}"); got != repo+":v1\n"+repo+":v2\n" {
		t.Errorf("after pull -a: %q", got)
	}
}
