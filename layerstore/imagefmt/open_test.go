package imagefmt

import (
	"archive/tar"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
)

func TestOpen_Formats(t *testing.T) {
	ref := openOK(t, fixture(t, "oci")).Images()[0]
	cases := []struct {
		name      string
		path      func(t *testing.T) string
		format    string
		mediaType string // of every layer
	}{
		{"oci-layout", func(t *testing.T) string { return fixture(t, "oci") },
			FormatOCILayout, ocispec.MediaTypeImageLayerGzip},
		{"oci-layout-zstd", func(t *testing.T) string { return fixture(t, "oci-zstd") },
			FormatOCILayout, ocispec.MediaTypeImageLayerZstd},
		{"oci-archive", func(t *testing.T) string { return fixture(t, "demo.oci.tar") },
			FormatOCIArchive, ocispec.MediaTypeImageLayerGzip},
		{"oci-archive-zstd-compressed", func(t *testing.T) string { return compressFile(t, fixture(t, "demo.oci.tar"), CompressionZstd) },
			FormatOCIArchive, ocispec.MediaTypeImageLayerGzip},
		{"docker-archive", func(t *testing.T) string { return fixture(t, "demo.docker.tar") },
			FormatDockerArchive, ocispec.MediaTypeImageLayer},
		{"docker-archive-gzip-compressed", func(t *testing.T) string { return compressFile(t, fixture(t, "demo.docker.tar"), CompressionGzip) },
			FormatDockerArchive, ocispec.MediaTypeImageLayer},
		{"docker-archive-docker25-blobs", docker25Archive,
			FormatDockerArchive, ocispec.MediaTypeImageLayerGzip},
		{"docker-archive-layer-tar-links", layerTarLinksArchive,
			FormatDockerArchive, ocispec.MediaTypeImageLayer},
		{"docker-archive-compressed-unnamed-layers", compressedLayersArchive,
			FormatDockerArchive, ocispec.MediaTypeImageLayerGzip},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.path(t)
			a, err := Open(p)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := a.Format(); got != tc.format {
				t.Errorf("Format() = %q, want %q", got, tc.format)
			}
			images := a.Images()
			if len(images) != 1 {
				t.Fatalf("%d images, want 1", len(images))
			}
			img := images[0]
			checkImage(t, img, []string{fixtureName}, tc.mediaType)
			if img.ConfigDigest != ref.ConfigDigest {
				t.Errorf("ConfigDigest = %s, want %s as in the OCI layout", img.ConfigDigest, ref.ConfigDigest)
			}
			if !slices.Equal(img.Config.RootFS.DiffIDs, ref.Config.RootFS.DiffIDs) {
				t.Errorf("diff_ids differ from the OCI layout's")
			}
			checkLayers(t, img)
			if err := a.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := a.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if rc, err := img.Layers[0].Open(); err == nil {
				rc.Close()
				t.Errorf("LayerBlob.Open after Close succeeded")
			}
		})
	}
}

// checkImage checks what every opened fixture image must satisfy.
func checkImage(t *testing.T, img layerstore.ImageSource, names []string, mediaType string) {
	t.Helper()
	if !slices.Equal(img.Names, names) {
		t.Errorf("Names = %q, want %q", img.Names, names)
	}
	if got := digest.FromBytes(img.ManifestRaw); got != img.ManifestDigest {
		t.Errorf("ManifestDigest = %s, but ManifestRaw hashes to %s", img.ManifestDigest, got)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(img.ManifestRaw, &m); err != nil {
		t.Errorf("ManifestRaw: %v", err)
	}
	if got := digest.FromBytes(img.ConfigRaw); got != img.ConfigDigest || img.Manifest.Config.Digest != got {
		t.Errorf("ConfigDigest = %s, manifest config = %s, ConfigRaw hashes to %s", img.ConfigDigest, img.Manifest.Config.Digest, got)
	}
	if got := img.Config.Config.Entrypoint; !slices.Equal(got, []string{"/bin/sh"}) {
		t.Errorf("config Entrypoint = %q", got)
	}
	if len(img.Layers) != fixtureLayers || len(img.Manifest.Layers) != fixtureLayers || len(m.Layers) != fixtureLayers {
		t.Fatalf("%d layers (manifest %d, raw %d), want %d", len(img.Layers), len(img.Manifest.Layers), len(m.Layers), fixtureLayers)
	}
	for i, l := range img.Layers {
		if l.DiffID != img.Config.RootFS.DiffIDs[i] {
			t.Errorf("layer %d DiffID = %s, config says %s", i, l.DiffID, img.Config.RootFS.DiffIDs[i])
		}
		if d := m.Layers[i]; l.Digest != d.Digest || l.Size != d.Size || l.MediaType != d.MediaType {
			t.Errorf("layer %d = %s %d %s, manifest says %s %d %s", i, l.Digest, l.Size, l.MediaType, d.Digest, d.Size, d.MediaType)
		}
		if l.MediaType != mediaType {
			t.Errorf("layer %d MediaType = %q, want %q", i, l.MediaType, mediaType)
		}
	}
}

// docker25Archive builds a docker-archive as docker 25+ with the containerd
// image store writes one: an OCI layout plus manifest.json naming
// blobs/sha256/<hex> members, the layers compressed.
func docker25Archive(t *testing.T) string {
	l := layout{t: t, dir: fixture(t, "oci")}
	entries := []tarEntry{
		{hdr: tar.Header{Name: "blobs/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "blobs/sha256/", Typeflag: tar.TypeDir, Mode: 0o755}},
	}
	blobs, err := os.ReadDir(filepath.Join(l.dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		data, err := os.ReadFile(filepath.Join(l.dir, "blobs", "sha256", b.Name()))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, reg("blobs/sha256/"+b.Name(), data))
	}
	for _, f := range []string{"oci-layout", "index.json"} {
		data, err := os.ReadFile(filepath.Join(l.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, reg(f, data))
	}
	_, m := l.manifest()
	e := dockerEntry{Config: blobPath(m.Config.Digest), RepoTags: []string{"demo:latest"}}
	for _, d := range m.Layers {
		e.Layers = append(e.Layers, blobPath(d.Digest))
	}
	entries = append(entries, reg("manifest.json", mustJSON(t, []dockerEntry{e})))
	p := filepath.Join(t.TempDir(), "docker25.tar")
	writeTar(t, p, entries)
	return p
}

// layerTarLinksArchive rewrites the skopeo docker-archive so that
// manifest.json names the <id>/layer.tar symlinks (as old docker did), and
// every member name starts with "./".
func layerTarLinksArchive(t *testing.T) string {
	entries := readTar(t, fixture(t, "demo.docker.tar"))
	linkTo := map[string]string{} // <diffid>.tar -> <id>/layer.tar
	for _, e := range entries {
		if e.hdr.Typeflag == tar.TypeSymlink {
			linkTo[path.Base(e.hdr.Linkname)] = e.hdr.Name
		}
	}
	var ms []dockerEntry
	for _, e := range entries {
		if e.hdr.Name == "manifest.json" {
			if err := json.Unmarshal(e.data, &ms); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, l := range ms[0].Layers {
		if linkTo[l] == "" {
			t.Fatalf("no symlink to %s in the fixture", l)
		}
		ms[0].Layers[i] = linkTo[l]
	}
	entries = replaceEntry(entries, "manifest.json", mustJSON(t, ms))
	for i := range entries {
		entries[i].hdr.Name = "./" + entries[i].hdr.Name
	}
	p := filepath.Join(t.TempDir(), "links.tar")
	writeTar(t, p, entries)
	return p
}

// compressedLayersArchive builds a docker-archive whose layers are gzip
// blobs in members whose names carry no digest, so Open must hash them.
func compressedLayersArchive(t *testing.T) string {
	l := layout{t: t, dir: fixture(t, "oci")}
	_, m := l.manifest()
	cfg, err := os.ReadFile(l.path(m.Config.Digest))
	if err != nil {
		t.Fatal(err)
	}
	e := dockerEntry{Config: m.Config.Digest.Encoded() + ".json", RepoTags: []string{"docker.io/library/demo"}}
	entries := []tarEntry{reg(e.Config, cfg)}
	for i, d := range m.Layers {
		data, err := os.ReadFile(l.path(d.Digest))
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("layer%d/layer.tar", i)
		entries = append(entries, reg(name, data))
		e.Layers = append(e.Layers, name)
	}
	entries = append(entries, reg("manifest.json", mustJSON(t, []dockerEntry{e})))
	p := filepath.Join(t.TempDir(), "gzlayers.tar")
	writeTar(t, p, entries)
	return p
}

func TestOpenReader_Stdin(t *testing.T) {
	cases := []struct {
		name, path string
		format     string
	}{
		{"docker-archive", fixture(t, "demo.docker.tar"), FormatDockerArchive},
		{"docker-archive-gzip", compressFile(t, fixture(t, "demo.docker.tar"), CompressionGzip), FormatDockerArchive},
		{"oci-archive-zstd", compressFile(t, fixture(t, "demo.oci.tar"), CompressionZstd), FormatOCIArchive},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tmp := t.TempDir()
			a, err := OpenReader(struct{ io.Reader }{f}, tmp) // a plain stream: no ReadAt, no Seek
			if err != nil {
				t.Fatalf("OpenReader: %v", err)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("temp dir holds %v; the spooled file should be unlinked", left)
			}
			if a.Format() != tc.format {
				t.Errorf("Format() = %q, want %q", a.Format(), tc.format)
			}
			img := a.Images()[0]
			checkImage(t, img, []string{fixtureName}, img.Layers[0].MediaType)
			checkLayers(t, img)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOpen_Pipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	src := fixture(t, "demo.oci.tar")
	done := make(chan error, 1)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			done <- err
			return
		}
		in, err := os.Open(src)
		if err != nil {
			w.Close()
			done <- err
			return
		}
		_, err = io.Copy(w, in)
		in.Close()
		w.Close()
		done <- err
	}()
	a, err := OpenIn(fifo, t.TempDir())
	if err != nil {
		t.Fatalf("Open(fifo): %v", err)
	}
	defer a.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a.Format() != FormatOCIArchive {
		t.Errorf("Format() = %q", a.Format())
	}
	checkLayers(t, a.Images()[0])
}

func TestOpen_NotAnArchive(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 64<<10)
	rand.Read(random)
	emptyDir := filepath.Join(dir, "empty-dir")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
	}{
		{"random-bytes", write("random.bin", random)},
		{"empty-file", write("empty", nil)},
		{"text", write("notes.txt", []byte("hello, this is no archive\n"))},
		{"rootfs-tar", fixture(t, "rootfs.tar")},
		{"empty-dir", emptyDir},
		{"xz", write("x.tar.xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2, 3})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Open(tc.path)
			if err == nil {
				a.Close()
			}
			wantErr(t, err, layerstore.ErrUnknownFormat, tc.path, "is not an image archive")
		})
	}
	t.Run("rootfs-tar-message", func(t *testing.T) {
		_, err := Open(fixture(t, "rootfs.tar"))
		wantErr(t, err, layerstore.ErrUnknownFormat, "no index.json or manifest.json")
	})
	t.Run("gzip-of-random-bytes", func(t *testing.T) {
		p := compressFile(t, write("random2.bin", random), CompressionGzip)
		_, err := Open(p)
		wantErr(t, err, layerstore.ErrUnknownFormat, p)
	})
	t.Run("missing-file", func(t *testing.T) {
		_, err := Open(filepath.Join(dir, "nope"))
		if !os.IsNotExist(err) {
			t.Errorf("error %v, want not-exist", err)
		}
	})
}

func TestOpen_TruncatedTar(t *testing.T) {
	for _, name := range []string{"demo.docker.tar", "demo.oci.tar"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(fixture(t, name))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(p, b[:len(b)/2+100], 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Open(p)
			wantErr(t, err, layerstore.ErrInvalid, p, "truncated")
		})
	}
	t.Run("truncated-gzip", func(t *testing.T) {
		gz := compressFile(t, fixture(t, "demo.docker.tar"), CompressionGzip)
		b, err := os.ReadFile(gz)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(gz, b[:len(b)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = Open(gz)
		wantErr(t, err, layerstore.ErrInvalid, gz, "gzip")
	})
}

func TestOpen_MissingBlob(t *testing.T) {
	t.Run("layer", func(t *testing.T) {
		l := copyLayout(t)
		_, m := l.manifest()
		gone := m.Layers[2].Digest
		if err := os.Remove(l.path(gone)); err != nil {
			t.Fatal(err)
		}
		a := openOK(t, l.dir) // the image is still listed; its blob is not there to read
		layers := a.Images()[0].Layers
		_, err := layers[2].Open()
		wantErr(t, err, layerstore.ErrMissingBlob, gone.String())
		rc, err := layers[1].Open()
		if err != nil {
			t.Fatalf("other layers open: %v", err)
		}
		rc.Close()
	})
	t.Run("config", func(t *testing.T) {
		l := copyLayout(t)
		_, m := l.manifest()
		if err := os.Remove(l.path(m.Config.Digest)); err != nil {
			t.Fatal(err)
		}
		_, err := Open(l.dir)
		wantErr(t, err, layerstore.ErrMissingBlob, l.dir, "config", m.Config.Digest.String())
	})
	t.Run("manifest", func(t *testing.T) {
		l := copyLayout(t)
		desc, _ := l.manifest()
		if err := os.Remove(l.path(desc.Digest)); err != nil {
			t.Fatal(err)
		}
		_, err := Open(l.dir)
		wantErr(t, err, layerstore.ErrMissingBlob, "manifest", desc.Digest.String())
	})
	t.Run("docker-archive-layer", func(t *testing.T) {
		entries := readTar(t, fixture(t, "demo.docker.tar"))
		var ms []dockerEntry
		for _, e := range entries {
			if e.hdr.Name == "manifest.json" {
				if err := json.Unmarshal(e.data, &ms); err != nil {
					t.Fatal(err)
				}
			}
		}
		gone := ms[0].Layers[3]
		entries = slices.DeleteFunc(entries, func(e tarEntry) bool { return e.hdr.Name == gone })
		p := filepath.Join(t.TempDir(), "missing.tar")
		writeTar(t, p, entries)
		_, err := Open(p)
		wantErr(t, err, layerstore.ErrMissingBlob, p, gone)
	})
}

func TestOpen_ConfigDigestMismatch(t *testing.T) {
	t.Run("oci-layout", func(t *testing.T) {
		l := copyLayout(t)
		_, m := l.manifest()
		b, err := os.ReadFile(l.path(m.Config.Digest))
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1 // same size, other bytes
		l.writeFile(filepath.Join("blobs", "sha256", m.Config.Digest.Encoded()), b)
		_, err = Open(l.dir)
		wantErr(t, err, layerstore.ErrDigestMismatch, "config", m.Config.Digest.String(), "hashes to")
	})
	t.Run("oci-layout-size", func(t *testing.T) {
		l := copyLayout(t)
		_, m := l.manifest()
		b, err := os.ReadFile(l.path(m.Config.Digest))
		if err != nil {
			t.Fatal(err)
		}
		l.writeFile(filepath.Join("blobs", "sha256", m.Config.Digest.Encoded()), append(b, ' '))
		_, err = Open(l.dir)
		wantErr(t, err, layerstore.ErrDigestMismatch, "config", m.Config.Digest.String(), "bytes")
	})
	t.Run("docker-archive", func(t *testing.T) {
		entries := readTar(t, fixture(t, "demo.docker.tar"))
		var cfgName string
		for i, e := range entries {
			if strings.HasSuffix(e.hdr.Name, ".json") && e.hdr.Name != "manifest.json" && !strings.Contains(e.hdr.Name, "/") {
				cfgName = e.hdr.Name
				entries[i].data = append([]byte(" "), e.data...) // still valid JSON, another digest
			}
		}
		p := filepath.Join(t.TempDir(), "bad-config.tar")
		writeTar(t, p, entries)
		_, err := Open(p)
		wantErr(t, err, layerstore.ErrDigestMismatch, cfgName)
	})
}

func TestOpen_ManifestDigestMismatch(t *testing.T) {
	l := copyLayout(t)
	desc, _ := l.manifest()
	b, err := os.ReadFile(l.path(desc.Digest))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = ' ' // the closing brace: now bad JSON too, but the digest is checked first
	l.writeFile(filepath.Join("blobs", "sha256", desc.Digest.Encoded()), b)
	_, err = Open(l.dir)
	wantErr(t, err, layerstore.ErrDigestMismatch, "manifest", desc.Digest.String())
}

func TestOpen_BadJSON(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(l layout)
		parts []string
	}{
		{"index.json", func(l layout) { l.writeFile("index.json", []byte(`{"schemaVersion":2,"manifests":[`)) },
			[]string{"index.json"}},
		{"oci-layout", func(l layout) { l.writeFile("oci-layout", []byte(`{imageLayoutVersion`)) },
			[]string{"oci-layout"}},
		{"manifest", func(l layout) { l.setManifest([]byte(`{"schemaVersion":2,"config":`)) },
			[]string{"manifest sha256:"}},
		{"config", func(l layout) {
			_, m := l.manifest()
			m.Config = l.writeBlob(m.Config.MediaType, []byte(`{"rootfs":{"type":"layers","diff_ids":[}`))
			l.setManifest(mustJSON(l.t, m))
		}, []string{"config sha256:"}},
		{"diff_id", func(l layout) {
			l.editConfig(func(c map[string]any) {
				c["rootfs"].(map[string]any)["diff_ids"].([]any)[1] = "sha256:nothex"
			})
		}, []string{"diff_ids[1]", "nothex"}},
		{"layer-digest", func(l layout) {
			_, m := l.manifest()
			m.Layers[0].Digest = "sha256:../../../etc/passwd"
			l.setManifest(mustJSON(l.t, m))
		}, []string{"layers[0]", "../../../etc/passwd"}},
		{"schema-version", func(l layout) {
			_, m := l.manifest()
			m.SchemaVersion = 1
			l.setManifest(mustJSON(l.t, m))
		}, []string{"schemaVersion 1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := copyLayout(t)
			tc.edit(l)
			_, err := Open(l.dir)
			wantErr(t, err, layerstore.ErrInvalid, append([]string{l.dir}, tc.parts...)...)
		})
	}
	t.Run("docker-manifest.json", func(t *testing.T) {
		entries := replaceEntry(readTar(t, fixture(t, "demo.docker.tar")), "manifest.json", []byte(`[{"Config":`))
		p := filepath.Join(t.TempDir(), "bad.tar")
		writeTar(t, p, entries)
		_, err := Open(p)
		wantErr(t, err, layerstore.ErrInvalid, p, "manifest.json")
	})
}

func TestOpen_LayerCountMismatch(t *testing.T) {
	t.Run("oci-layout", func(t *testing.T) {
		l := copyLayout(t)
		cfg := l.editConfig(func(c map[string]any) {
			rootfs := c["rootfs"].(map[string]any)
			ids := rootfs["diff_ids"].([]any)
			rootfs["diff_ids"] = ids[:len(ids)-1]
		})
		_, err := Open(l.dir)
		wantErr(t, err, layerstore.ErrInvalid, cfg.String(), "5 layers", "diff_ids has 4")
	})
	t.Run("docker-archive", func(t *testing.T) {
		entries := readTar(t, fixture(t, "demo.docker.tar"))
		var ms []dockerEntry
		for _, e := range entries {
			if e.hdr.Name == "manifest.json" {
				if err := json.Unmarshal(e.data, &ms); err != nil {
					t.Fatal(err)
				}
			}
		}
		ms[0].Layers = append(ms[0].Layers, ms[0].Layers[0])
		entries = replaceEntry(entries, "manifest.json", mustJSON(t, ms))
		p := filepath.Join(t.TempDir(), "six.tar")
		writeTar(t, p, entries)
		_, err := Open(p)
		wantErr(t, err, layerstore.ErrInvalid, p, "6 layers", "diff_ids has 5")
	})
}

func TestOpen_UnsupportedMediaType(t *testing.T) {
	cases := []struct {
		name, mediaType string
		edit            func(m *ocispec.Manifest, mt string)
	}{
		{"layer", "application/vnd.oci.image.layer.v1.tar+bzip2", func(m *ocispec.Manifest, mt string) { m.Layers[3].MediaType = mt }},
		{"config", "application/vnd.cncf.helm.config.v1+json", func(m *ocispec.Manifest, mt string) { m.Config.MediaType = mt }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := copyLayout(t)
			_, m := l.manifest()
			tc.edit(&m, tc.mediaType)
			l.setManifest(mustJSON(t, m))
			_, err := Open(l.dir)
			wantErr(t, err, layerstore.ErrInvalid, tc.mediaType)
		})
	}
	t.Run("index-entry", func(t *testing.T) {
		l := copyLayout(t)
		idx := l.index()
		idx.Manifests[0].MediaType = "application/vnd.docker.distribution.manifest.v1+prettyjws"
		l.setIndex(idx)
		_, err := Open(l.dir)
		wantErr(t, err, layerstore.ErrInvalid, "manifest.v1+prettyjws")
	})
}

func TestOpen_MemberEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "a/../../evil", "/etc/evil"} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "evil.tar")
			writeTar(t, p, []tarEntry{reg("manifest.json", []byte(`[]`)), reg(name, []byte("x"))})
			_, err := Open(p)
			wantErr(t, err, layerstore.ErrInvalid, p, "escapes")
		})
	}
	t.Run("manifest.json-names-outside", func(t *testing.T) {
		entries := readTar(t, fixture(t, "demo.docker.tar"))
		var ms []dockerEntry
		for _, e := range entries {
			if e.hdr.Name == "manifest.json" {
				if err := json.Unmarshal(e.data, &ms); err != nil {
					t.Fatal(err)
				}
			}
		}
		ms[0].Layers[0] = "../../" + ms[0].Layers[0]
		p := filepath.Join(t.TempDir(), "out.tar")
		writeTar(t, p, replaceEntry(entries, "manifest.json", mustJSON(t, ms)))
		_, err := Open(p)
		wantErr(t, err, layerstore.ErrInvalid, "escapes")
	})
}

func TestOpen_NestedIndex(t *testing.T) {
	missing := digest.FromString("not in the layout")
	cases := []struct {
		name      string
		platforms func(real ocispec.Descriptor) []ocispec.Descriptor
	}{
		{"this-platform-second", func(real ocispec.Descriptor) []ocispec.Descriptor {
			other := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: missing, Size: 10,
				Platform: &ocispec.Platform{OS: "linux", Architecture: "not-" + runtime.GOARCH}}
			real.Platform = &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
			return []ocispec.Descriptor{other, real}
		}},
		{"no-platform-matches-first-wins", func(real ocispec.Descriptor) []ocispec.Descriptor {
			att := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: missing, Size: 10,
				Platform:    &ocispec.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"}}
			real.Platform = &ocispec.Platform{OS: "plan9", Architecture: "not-" + runtime.GOARCH}
			other := real
			other.Digest, other.Platform = missing, &ocispec.Platform{OS: "plan9", Architecture: "other"}
			return []ocispec.Descriptor{att, real, other}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := copyLayout(t)
			idx := l.index()
			real := idx.Manifests[0]
			real.Annotations = nil
			nested := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: tc.platforms(real)}
			nested.SchemaVersion = 2
			desc := l.writeBlob(ocispec.MediaTypeImageIndex, mustJSON(t, nested))
			desc.Annotations = map[string]string{ocispec.AnnotationRefName: "demo:nested"}
			idx.Manifests = []ocispec.Descriptor{desc}
			l.setIndex(idx)
			img := openOK(t, l.dir).Images()[0]
			checkImage(t, img, []string{"demo:nested"}, ocispec.MediaTypeImageLayerGzip)
			if img.ManifestDigest != real.Digest {
				t.Errorf("picked manifest %s, want %s", img.ManifestDigest, real.Digest)
			}
		})
	}
	t.Run("picked-manifest-missing", func(t *testing.T) {
		l := copyLayout(t)
		idx := l.index()
		nested := ocispec.Index{Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: missing, Size: 10,
			Platform: &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}}}}
		nested.SchemaVersion = 2
		idx.Manifests = []ocispec.Descriptor{l.writeBlob("", mustJSON(t, nested))} // media type by content
		l.setIndex(idx)
		_, err := Open(l.dir)
		wantErr(t, err, layerstore.ErrMissingBlob, missing.String())
	})
}

func TestOpen_Names(t *testing.T) {
	cases := []struct {
		name        string
		annotations []map[string]string // one index.json entry each, all naming the fixture's manifest
		want        []string
	}{
		{"ref-name-word", []map[string]string{{ocispec.AnnotationRefName: "demo"}}, []string{"demo:latest"}},
		{"ref-name-full", []map[string]string{{ocispec.AnnotationRefName: "registry.example:5000/team/app:v1"}},
			[]string{"registry.example:5000/team/app:v1"}},
		{"ref-name-docker-hub", []map[string]string{{ocispec.AnnotationRefName: "docker.io/library/demo:v2"}}, []string{"demo:v2"}},
		{"containerd-name-wins", []map[string]string{{ocispec.AnnotationRefName: "latest", annotationContainerdName: "docker.io/library/demo:latest"}},
			[]string{"demo:latest"}},
		{"none", []map[string]string{nil}, nil},
		{"two-tags-one-image", []map[string]string{{ocispec.AnnotationRefName: "demo:a"}, {ocispec.AnnotationRefName: "demo:b"}, {ocispec.AnnotationRefName: "demo:a"}},
			[]string{"demo:a", "demo:b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := copyLayout(t)
			idx := l.index()
			real := idx.Manifests[0]
			idx.Manifests = nil
			for _, ann := range tc.annotations {
				d := real
				d.Annotations = ann
				idx.Manifests = append(idx.Manifests, d)
			}
			l.setIndex(idx)
			images := openOK(t, l.dir).Images()
			if len(images) != 1 {
				t.Fatalf("%d images, want 1", len(images))
			}
			if !slices.Equal(images[0].Names, tc.want) {
				t.Errorf("Names = %q, want %q", images[0].Names, tc.want)
			}
		})
	}
	t.Run("bad-ref-name", func(t *testing.T) {
		l := copyLayout(t)
		idx := l.index()
		idx.Manifests[0].Annotations = map[string]string{ocispec.AnnotationRefName: "demo::x"}
		l.setIndex(idx)
		_, err := Open(l.dir)
		wantErr(t, err, layerstore.ErrInvalid, `"demo::x"`, ocispec.AnnotationRefName)
	})
}

func TestOpen_EmptyIndex(t *testing.T) {
	l := copyLayout(t)
	l.writeFile("index.json", []byte(`{"schemaVersion":2,"manifests":[]}`))
	_, err := Open(l.dir)
	wantErr(t, err, layerstore.ErrInvalid, "index.json", "no images")
}

func TestOpen_NoOCILayoutFile(t *testing.T) {
	l := copyLayout(t)
	if err := os.Remove(filepath.Join(l.dir, "oci-layout")); err != nil {
		t.Fatal(err)
	}
	_, err := Open(l.dir)
	wantErr(t, err, layerstore.ErrInvalid, "oci-layout")
}

func TestOpen_SymlinkOutOfLayout(t *testing.T) {
	l := copyLayout(t)
	_, m := l.manifest()
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := l.path(m.Layers[0].Digest)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, p); err != nil {
		t.Fatal(err)
	}
	a := openOK(t, l.dir)
	rc, err := a.Images()[0].Layers[0].Open()
	if err == nil {
		rc.Close()
		t.Fatal("a layer blob symlinked out of the layout opened")
	}
}
