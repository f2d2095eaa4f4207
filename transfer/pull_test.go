package transfer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/internal/dockertest"
	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/registrytest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/layerstore/imagefmt"
	"github.com/strata-dev/strata/transfer"
	"github.com/strata-dev/strata/transfer/registry"
)

// newClient is a registry client with credentials and config in temporary
// directories.
func newClient(t testing.TB) *registry.Client {
	t.Helper()
	c, err := registry.New(registry.Options{ConfigDir: t.TempDir(), DockerConfigDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustRef(t testing.TB, s string) registry.Reference {
	t.Helper()
	r, err := registry.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// loadLayout stores the image of an OCI layout directory as name.
func loadLayout(t testing.TB, s *layerstore.Store, dir, name string) layerstore.Image {
	t.Helper()
	a, err := imagefmt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	imgs := a.Images()
	imgs[0].Names = []string{name}
	out, err := transfer.Load(context.Background(), s, imgs[:1], transfer.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}

// TestPull_PushRoundTrip is the library's round trip: Push of a stored
// image, Pull into another store, the same image with the repo digest on
// both sides, the blob remembered for the layer.
func TestPull_PushRoundTrip(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	c := newClient(t)
	src, dst := storetest.Open(t), storetest.Open(t)
	ref := mustRef(t, reg.Addr+"/lib/demo:1")
	img := loadLayout(t, src, filepath.Join(fixtures.Dir(t), "oci"), ref.Name())
	var events []registry.Event
	res, err := transfer.Push(context.Background(), src, c, ref, transfer.PushOptions{Progress: func(e registry.Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 {
		t.Error("push reported no progress")
	}
	pulled, err := transfer.Pull(context.Background(), dst, c, ref, transfer.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Image.ID != img.ID || pulled.Digest != res.Digest {
		t.Errorf("pulled %s by %s; pushed %s as %s", pulled.Image.ID, pulled.Digest, img.ID, res.Digest)
	}
	for _, s := range []*layerstore.Store{src, dst} {
		got, err := s.ResolveImage(ref.Repo() + "@" + res.Digest.String())
		if err != nil || got.ID != img.ID {
			t.Errorf("image by repo digest: %v %v", got.ID, err)
		}
	}
	li, err := dst.Layer(img.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(li.MediaTypes) != 1 {
		t.Errorf("pulled layer's registry blobs: %v", li.MediaTypes)
	}
}

// TestPull_ZstdPush pushes with zstd (OCI media types) and pulls it back.
func TestPull_ZstdPush(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	c := newClient(t)
	src, dst := storetest.Open(t), storetest.Open(t)
	ref := mustRef(t, reg.Addr+"/lib/zstd:1")
	img := loadLayout(t, src, filepath.Join(fixtures.Dir(t), "oci"), ref.Name())
	if _, err := transfer.Push(context.Background(), src, c, ref, transfer.PushOptions{Compression: registry.Zstd}); err != nil {
		t.Fatal(err)
	}
	pulled, err := transfer.Pull(context.Background(), dst, c, ref, transfer.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Image.ID != img.ID {
		t.Errorf("pulled %s, pushed %s", pulled.Image.ID, img.ID)
	}
	var m struct{ Layers []struct{ MediaType string } }
	if err := json.Unmarshal(pulled.Image.ManifestRaw, &m); err != nil || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Errorf("zstd push made layers of %v (%v)", m.Layers, err)
	}
}

// childOf stores base plus one layer of size random bytes as name.
func childOf(t testing.TB, s *layerstore.Store, base, name string, size int) layerstore.Image {
	t.Helper()
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
	content := make([]byte, size)
	rand.New(rand.NewSource(1)).Read(content)
	tw.WriteHeader(&tar.Header{Name: "added.bin", Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)})
	tw.Write(content)
	tw.Close()
	layer := buf.Bytes()
	diffID := digest.FromBytes(layer)
	var cfg map[string]any
	json.Unmarshal(img.ConfigRaw, &cfg)
	rootfs := cfg["rootfs"].(map[string]any)
	rootfs["diff_ids"] = append(rootfs["diff_ids"].([]any), diffID.String())
	raw, _ := json.Marshal(cfg)
	child := &layerstore.ImageSource{Names: []string{name}, ConfigRaw: raw, Layers: append(src.Layers, layerstore.LayerBlob{
		Digest: diffID, Size: int64(len(layer)), DiffID: diffID,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil },
	})}
	out, err := s.AddImage(context.Background(), child, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkPull pulls the Debian image ($STRATA_DEBIAN) from a loopback
// registry into an empty store, beside skopeo copy into an empty
// containers-storage (vfs driver, its own root) and docker pull into a
// dockerd of its own (internal/dockertest: overlay2, else vfs) from the same
// registry, interleaved in each
// iteration with the order rotated. It reports seconds per pull of each and
// the ratios. Then "base-present": a child of Debian (one 32 MiB layer
// more) pulled where Debian is stored; it reports the blob bytes that
// crossed a counting proxy for each contender.
func BenchmarkPull(b *testing.B) {
	reg := registrytest.Start(b, registrytest.Options{})
	proxy := registrytest.StartProxy(b, reg.URL())
	c := newClient(b)
	src, err := layerstore.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	name := proxy.Addr + "/bench/debian:bookworm"
	childName := proxy.Addr + "/bench/debian:child"
	loadLayout(b, src, filepath.Join(fixtures.Debian(b), "oci"), name)
	childOf(b, src, name, childName, 32<<20)
	for _, n := range []string{name, childName} {
		if _, err := transfer.Push(context.Background(), src, c, mustRef(b, n), transfer.PushOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	_, haveSkopeo := exec.LookPath("skopeo")
	ddir, err := os.MkdirTemp("", "registry-bench-dockerd-")
	if err != nil {
		b.Fatal(err)
	}
	d, err := dockertest.Start(ddir) // removes ddir when it fails or closes
	if err != nil {
		b.Logf("no docker contender: %v", err)
		d = nil
	} else {
		b.Cleanup(func() { d.Close() })
	}
	tmp := b.TempDir()
	b.Cleanup(func() { exec.Command("rm", "-rf", filepath.Join(tmp, "cs")).Run() })

	// Each contender pulls into a store of its own; reset empties it,
	// outside the timing.
	type contender struct {
		name  string
		reset func(b *testing.B)
		pull  func(b *testing.B, ref string)
	}
	run := func(b *testing.B, name string, args ...string) {
		b.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	strataRoot, csRoot := filepath.Join(tmp, "strata"), filepath.Join(tmp, "cs")
	contenders := []contender{{"strata",
		func(b *testing.B) { os.RemoveAll(strataRoot) },
		func(b *testing.B, ref string) {
			s, err := layerstore.Open(strataRoot, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := transfer.Pull(context.Background(), s, c, mustRef(b, ref), transfer.PullOptions{}); err != nil {
				b.Fatal(err)
			}
			s.Close()
		}}}
	if haveSkopeo == nil {
		contenders = append(contenders, contender{"skopeo",
			func(b *testing.B) { run(b, "rm", "-rf", csRoot) },
			func(b *testing.B, ref string) {
				run(b, "skopeo", "copy", "-q", "--src-tls-verify=false", "docker://"+ref,
					"containers-storage:[vfs@"+csRoot+"/root+"+csRoot+"/run]"+ref)
			}})
	}
	if d != nil {
		contenders = append(contenders, contender{"docker",
			func(b *testing.B) { d.Docker("", "rmi", "-f", name, childName) },
			func(b *testing.B, ref string) {
				if r := d.Docker("", "pull", "-q", ref); r.Code != 0 {
					b.Fatalf("docker pull: %s", r.Stderr)
				}
			}})
	}
	b.Run("empty", func(b *testing.B) {
		secs := map[string]float64{}
		for i := 0; i < b.N; i++ {
			for j := range contenders {
				k := contenders[(i+j)%len(contenders)]
				k.reset(b)
				start := time.Now()
				k.pull(b, name)
				secs[k.name] += time.Since(start).Seconds()
			}
		}
		for _, k := range contenders {
			b.ReportMetric(secs[k.name]/float64(b.N), k.name+"-s/op")
			if k.name != "strata" {
				b.ReportMetric(secs["strata"]/secs[k.name], "strata/"+k.name)
			}
		}
		b.ReportMetric(0, "ns/op")
	})
	b.Run("base-present", func(b *testing.B) {
		moved := map[string]int64{}
		for i := 0; i < b.N; i++ {
			for _, k := range contenders {
				k.reset(b)
				k.pull(b, name)
				before := proxy.BlobBytes.Load()
				k.pull(b, childName)
				moved[k.name] += proxy.BlobBytes.Load() - before
			}
		}
		for _, k := range contenders {
			b.ReportMetric(float64(moved[k.name])/float64(b.N)/(1<<20), k.name+"-MiB-moved")
		}
		b.ReportMetric(0, "ns/op")
	})
}

// TestPush_Chunked pushes a layer larger than the chunk size: it goes up
// in PATCHes, and a PATCH that fails is sent again from where the registry
// says the upload stands; the image pulls back whole.
func TestPush_Chunked(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	proxy := registrytest.StartProxy(t, reg.URL())
	c, err := registry.New(registry.Options{ConfigDir: t.TempDir(), DockerConfigDir: t.TempDir(), ChunkSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	src, dst := storetest.Open(t), storetest.Open(t)
	ref := mustRef(t, proxy.Addr+"/lib/chunked:1")
	loadLayout(t, src, filepath.Join(fixtures.Dir(t), "oci"), "demo")
	img := childOf(t, src, "demo", ref.Name(), 4<<20)
	proxy.FailPatch(2)
	if _, err := transfer.Push(context.Background(), src, c, ref, transfer.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	patches := 0
	for _, r := range proxy.Requests() {
		if strings.HasPrefix(r, "PATCH ") {
			patches++
		}
	}
	if patches < 5 {
		t.Errorf("%d PATCH requests for a 4 MiB layer in 1 MiB chunks (one failed)", patches)
	}
	pulled, err := transfer.Pull(context.Background(), dst, c, ref, transfer.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Image.ID != img.ID {
		t.Errorf("pulled %s, pushed %s", pulled.Image.ID, img.ID)
	}
}

// TestPull_ResumesDownload: a download an earlier pull left (the first half
// of the largest blob) is read back and only the rest is asked for, with
// a Range request; one whose bytes are wrong fails the check, and the
// pull starts that blob again from nothing on its own. Either way the image is
// the one pushed and no download is left.
func TestPull_ResumesDownload(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	proxy := registrytest.StartProxy(t, reg.URL())
	c := newClient(t)
	src := storetest.Open(t)
	ref := mustRef(t, proxy.Addr+"/lib/resume:1")
	img := loadLayout(t, src, filepath.Join(fixtures.Dir(t), "oci"), ref.Name())
	if _, err := transfer.Push(context.Background(), src, c, ref, transfer.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct{ Digest digest.Digest }
	}
	json.Unmarshal(img.ManifestRaw, &m)
	remote, err := c.Get(context.Background(), ref, registry.DefaultPlatform(), nil)
	if err != nil {
		t.Fatal(err)
	}
	big := 0
	for i, l := range remote.Source.Layers {
		if l.Size > remote.Source.Layers[big].Size {
			big = i
		}
	}
	blob := remote.Source.Layers[big]
	rc, err := blob.Open()
	if err != nil {
		t.Fatal(err)
	}
	content, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || int64(len(content)) != blob.Size {
		t.Fatalf("blob %s: %d bytes, %v", blob.Digest, len(content), err)
	}
	total := remote.Source.Manifest.Config.Size // blob bytes of a whole pull
	for _, l := range remote.Source.Layers {
		total += l.Size
	}
	for _, tc := range []struct {
		name   string
		left   []byte // what the earlier pull left
		moved  int64  // blob bytes this pull moves, at least
		ranges int64
	}{
		{"first half", content[:len(content)/2], total - int64(len(content)/2), 1},
		// Found wrong as the stored part is decompressed, before the rest
		// is asked for, and that layer again from nothing. Range requests
		// are not counted (-1): a second attempt resumes the downloads of
		// other layers the failure cut short, and whether it cut any short
		// depends on timing (in runs here it cut none).
		{"wrong bytes", bytes.Repeat([]byte{'x'}, len(content)/2), total, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := storetest.Open(t)
			dl, err := dst.OpenDownload(blob.Digest)
			if err != nil {
				t.Fatal(err)
			}
			dl.Write(tc.left)
			if err := dl.Keep(); err != nil {
				t.Fatal(err)
			}
			rep, err := dst.Check(false)
			if err != nil || len(rep.Downloads) != 1 || !rep.OK() || len(rep.Garbage) != 0 {
				t.Fatalf("check of a store with a download: %+v %v", rep, err)
			}
			before, ranges := proxy.BlobBytes.Load(), proxy.RangeRequests.Load()
			pulled, err := transfer.Pull(context.Background(), dst, c, ref, transfer.PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pulled.Image.ID != img.ID {
				t.Errorf("pulled %s, pushed %s", pulled.Image.ID, img.ID)
			}
			got := proxy.BlobBytes.Load() - before
			if got < tc.moved || tc.ranges == 1 && got != tc.moved {
				t.Errorf("moved %d blob bytes, want %d (whole pull %d, left %d)", got, tc.moved, total, len(tc.left))
			}
			if got := proxy.RangeRequests.Load() - ranges; tc.ranges >= 0 && got != tc.ranges {
				t.Errorf("%d Range requests, want %d", got, tc.ranges)
			}
			if rep, err := dst.Check(false); err != nil || len(rep.Downloads) != 0 {
				t.Errorf("downloads after the pull: %v %v", rep.Downloads, err)
			}
		})
	}
}

// TestPull_PastEndOfArchive: an image in a registry (put there by skopeo)
// whose layer's tar goes on for a gigabyte of zeros past its end-of-archive
// marker (a gzip blob of 1 MB) is refused, naming the layer; nothing is
// stored and no download is kept for a next pull to resume.
func TestPull_PastEndOfArchive(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo is not installed")
	}
	reg := registrytest.Start(t, registrytest.Options{})
	layout, blob := fixtures.PaddedLayout(t, "gzip", 1<<30)
	ref := mustRef(t, reg.Addr+"/lib/padded:1")
	if out, err := exec.Command("skopeo", "copy", "-q", "--dest-tls-verify=false", "oci:"+layout+":padded", "docker://"+ref.Name()).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	s := storetest.Open(t)
	_, err := transfer.Pull(context.Background(), s, newClient(t), ref, transfer.PullOptions{})
	if !errors.Is(err, layerstore.ErrInvalid) || !strings.Contains(err.Error(), string(blob)) || !strings.Contains(err.Error(), "end-of-archive") {
		t.Fatalf("pull: %v, want ErrInvalid naming layer %s and the end-of-archive marker", err, blob)
	}
	t.Logf("pull: %v", err)
	if r := checkNothingStored(t, s); len(r.Downloads) != 0 {
		t.Errorf("downloads %v", r.Downloads)
	}
}

// pushChild pushes, through a counting proxy, the demo image with one layer
// more (size random bytes in added.bin) and returns the proxy, the ref and
// the remote image.
func pushChild(t *testing.T, name string, size int) (*registrytest.Proxy, registry.Reference, *registry.Remote) {
	t.Helper()
	return pushChildTo(t, registrytest.Start(t, registrytest.Options{}), name, size)
}

// pushChildTo is pushChild to registry reg.
func pushChildTo(t *testing.T, reg *registrytest.Registry, name string, size int) (*registrytest.Proxy, registry.Reference, *registry.Remote) {
	t.Helper()
	proxy := registrytest.StartProxy(t, reg.URL())
	c := newClient(t)
	src := storetest.Open(t)
	ref := mustRef(t, proxy.Addr+"/lib/"+name+":1")
	loadLayout(t, src, filepath.Join(fixtures.Dir(t), "oci"), "demo")
	childOf(t, src, "demo", ref.Name(), size)
	if _, err := transfer.Push(context.Background(), src, c, ref, transfer.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	remote, err := c.Get(context.Background(), ref, registry.DefaultPlatform(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return proxy, ref, remote
}

// checkNothingStored runs the checker on s, which a failed pull left: no
// image, layer or object is stored (downloads may be). It returns the
// report.
func checkNothingStored(t *testing.T, s *layerstore.Store) *layerstore.CheckReport {
	t.Helper()
	r := storetest.Check(t, s)
	if r == nil {
		t.FailNow()
	}
	if r.Images != 0 || r.Layers != 0 || r.Objects != 0 {
		t.Errorf("stored %d images, %d layers, %d objects", r.Images, r.Layers, r.Objects)
	}
	return r
}

// hasDownload reports whether the check r lists a download of blob d.
func hasDownload(r *layerstore.CheckReport, d digest.Digest) bool {
	return slices.ContainsFunc(r.Downloads, func(s string) bool { return strings.HasPrefix(s, string(d)+" ") })
}

// downloadBytes sums the sizes of the downloads a check reports.
func downloadBytes(t *testing.T, r *layerstore.CheckReport) (n int64) {
	t.Helper()
	for _, d := range r.Downloads {
		var size int64
		if _, err := fmt.Sscanf(d[strings.Index(d, " (")+2:], "%d bytes)", &size); err != nil {
			t.Fatalf("download %q: %v", d, err)
		}
		n += size
	}
	return n
}

// A store opened with a MaxFileSize below a file of a layer refuses the
// pull naming the layer, the file and the limit, and stores nothing; the
// refusal is this store's, not the blob's fault, so what was downloaded
// is kept: a pull into the store opened without the limit resumes from
// there, asks the registry for the rest only, and leaves no download.
func TestPull_OverMaxFileSize_KeepsDownloads(t *testing.T) {
	proxy, ref, remote := pushChild(t, "limit", 24<<20)
	top := remote.Source.Layers[len(remote.Source.Layers)-1]
	total := remote.Source.Manifest.Config.Size // blob bytes of a whole pull
	for _, l := range remote.Source.Layers {
		total += l.Size
	}
	root := filepath.Join(t.TempDir(), "store")
	limited := storetest.OpenAt(t, root, &layerstore.Options{MaxFileSize: 20 << 20})
	_, err := transfer.Pull(context.Background(), limited, newClient(t), ref, transfer.PullOptions{})
	if !errors.Is(err, layerstore.ErrInvalid) || !errors.Is(err, layerstore.ErrOverLimit) {
		t.Fatalf("pull: %v, want ErrOverLimit and ErrInvalid", err)
	}
	for _, want := range []string{string(top.Digest), `"added.bin"`, "25165824", "20971520", "MaxFileSize"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("pull: %v; want it to say %s", err, want)
		}
	}
	t.Logf("pull: %v", err)
	r := checkNothingStored(t, limited)
	kept := downloadBytes(t, r)
	if !hasDownload(r, top.Digest) {
		t.Errorf("downloads %v: the refused layer's %s is not kept", r.Downloads, top.Digest)
	}
	before, ranges := proxy.BlobBytes.Load(), proxy.RangeRequests.Load()
	s := storetest.OpenAt(t, root, nil)
	pulled, err := transfer.Pull(context.Background(), s, newClient(t), ref, transfer.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Image.ID != remote.Source.ConfigDigest {
		t.Errorf("pulled %s, pushed %s", pulled.Image.ID, remote.Source.ConfigDigest)
	}
	if got := proxy.BlobBytes.Load() - before; got != total-kept {
		t.Errorf("the pull after moved %d blob bytes, want %d (whole pull %d, kept %d)", got, total-kept, total, kept)
	}
	if proxy.RangeRequests.Load() == ranges {
		t.Error("the pull after made no Range request")
	}
	if r := storetest.Check(t, s); r != nil && len(r.Downloads) != 0 {
		t.Errorf("downloads after the pull: %v", r.Downloads)
	}
}

// A layer the registry sends wrong fails the pull and its download goes;
// the other layers' downloads stay (here the base layer's, whole, which an
// earlier pull left), as docker keeps the layers that came whole: the next
// pull (through a proxy that sends it right) asks only for
// the rest.
func TestPull_WrongLayer_KeepsTheOthersDownloads(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	proxy, ref, remote := pushChildTo(t, reg, "wrong", 8<<20)
	top := remote.Source.Layers[len(remote.Source.Layers)-1]
	total := remote.Source.Manifest.Config.Size
	for _, l := range remote.Source.Layers {
		total += l.Size
	}
	// A download of the base layer, whole, as an earlier pull left it.
	base := remote.Source.Layers[0]
	s := storetest.Open(t)
	rc, err := base.Open()
	if err != nil {
		t.Fatal(err)
	}
	content, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	dl, err := s.OpenDownload(base.Digest)
	if err != nil {
		t.Fatal(err)
	}
	dl.Write(content)
	if err := dl.Keep(); err != nil {
		t.Fatal(err)
	}
	proxy.Corrupt(top.Digest)
	_, err = transfer.Pull(context.Background(), s, newClient(t), ref, transfer.PullOptions{})
	if err == nil || !strings.Contains(err.Error(), string(top.Digest)) || !strings.Contains(err.Error(), "nothing stored") {
		t.Fatalf("pull of a corrupted layer: %v, want an error naming %s", err, top.Digest)
	}
	t.Logf("pull: %v", err)
	r := checkNothingStored(t, s)
	if hasDownload(r, top.Digest) {
		t.Errorf("downloads %v: the wrong layer's is kept", r.Downloads)
	}
	if want := fmt.Sprintf("%s (%d bytes)", base.Digest, base.Size); !slices.Contains(r.Downloads, want) {
		t.Errorf("downloads %v: the base layer's, whole, %s, is not kept", r.Downloads, want)
	}
	kept := downloadBytes(t, r)
	t.Logf("downloads kept: %v", r.Downloads)
	right := registrytest.StartProxy(t, reg.URL())
	if _, err := transfer.Pull(context.Background(), s, newClient(t), mustRef(t, right.Addr+"/lib/wrong:1"), transfer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := right.BlobBytes.Load(); got != total-kept {
		t.Errorf("the pull after moved %d blob bytes, want %d (whole pull %d, kept %d)", got, total-kept, total, kept)
	}
}

// TestPull_ConsistentlyWrong_Bounded: a registry that keeps sending two
// layers wrong, both resumed from what an earlier pull left, fails the
// pull after a bounded number of attempts: each layer is tried again from
// nothing at most once (they took turns being resumed, for ever).
func TestPull_ConsistentlyWrong_Bounded(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	proxy := registrytest.StartProxy(t, reg.URL())
	c := newClient(t)
	src := storetest.Open(t)
	ref := mustRef(t, proxy.Addr+"/lib/alwayswrong:1")
	loadLayout(t, src, filepath.Join(fixtures.Dir(t), "oci"), "demo")
	childOf(t, src, "demo", "one", 4<<20)
	childOf(t, src, "one", ref.Name(), 4<<20+1)
	if _, err := transfer.Push(context.Background(), src, c, ref, transfer.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	remote, err := c.Get(context.Background(), ref, registry.DefaultPlatform(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The base is stored: the two layers are the pull's only downloads,
	// read at once (Workers 2).
	s := storetest.Open(t)
	loadLayout(t, s, filepath.Join(fixtures.Dir(t), "oci"), "demo")
	var wrong []digest.Digest
	for _, l := range remote.Source.Layers[len(remote.Source.Layers)-2:] {
		dl, err := s.OpenDownload(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		dl.Write(bytes.Repeat([]byte{'x'}, int(l.Size/2)))
		if err := dl.Keep(); err != nil {
			t.Fatal(err)
		}
		proxy.Corrupt(l.Digest)
		wrong = append(wrong, l.Digest)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = transfer.Pull(ctx, s, c, ref, transfer.PullOptions{})
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "nothing stored") {
		t.Fatalf("pull from a registry that keeps sending layers wrong: %v, want it refused", err)
	}
	t.Logf("pull: %v", err)
	gets := 0
	for _, r := range proxy.Requests() {
		for _, d := range wrong {
			if strings.HasPrefix(r, "GET ") && strings.HasSuffix(r, "/blobs/"+string(d)) {
				gets++
			}
		}
	}
	// Each wrong layer: resumed, then again from nothing, once per attempt
	// (one attempt, and one more for each layer tried again).
	if max := len(wrong) * (len(wrong) + 1); gets > max {
		t.Errorf("%d requests for the wrong layers' blobs, want at most %d", gets, max)
	}
	if r := storetest.Check(t, s); r != nil && r.Images != 1 {
		t.Errorf("%d images stored, want the base alone", r.Images)
	}
}
