package imagefmt

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
)

// memSource is an archive in memory, for fuzzing without touching disk.
type memSource map[string][]byte

var _ source = memSource(nil)

func (m memSource) open(name string) (io.ReadCloser, int64, error) {
	b, ok := m[name]
	if !ok {
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func (m memSource) has(name string) bool { _, ok := m[name]; return ok }
func (m memSource) close() error         { return nil }

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedLayout is an OCI layout in memory built from testdata/layout: the
// fixture's manifests and config, and short stand-ins for the layer blobs
// (LayerBlob.Open does not verify them). Callers add index.json.
func seedLayout(t testing.TB) memSource {
	src := memSource{ocispec.ImageLayoutFile: []byte(`{"imageLayoutVersion":"1.0.0"}`)}
	for _, f := range []string{"manifest.json", "manifest-zstd.json", "config.json", "nested-index.json"} {
		b := readTestdata(t, "layout/"+f)
		src[blobPath(digest.FromBytes(b))] = b
		if strings.HasPrefix(f, "manifest") {
			var m ocispec.Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			for _, l := range m.Layers {
				src[blobPath(l.Digest)] = []byte("layer " + l.Digest.String())
			}
		}
	}
	return src
}

// exercise reads everything an opened archive offers, as the store would.
func exercise(t *testing.T, images []layerstore.ImageSource) {
	for _, img := range images {
		if len(img.Layers) != len(img.Config.RootFS.DiffIDs) {
			t.Fatalf("%d layers but %d diff_ids", len(img.Layers), len(img.Config.RootFS.DiffIDs))
		}
		for _, n := range img.Names {
			if again, err := layerstore.NormalizeRef(n); err != nil || again != n {
				t.Fatalf("name %q is not normalized: %q, %v", n, again, err)
			}
		}
		for _, l := range img.Layers {
			if _, ok := LayerCompression(l.MediaType); !ok {
				t.Fatalf("layer media type %q accepted", l.MediaType)
			}
			if rc, err := l.Open(); err == nil {
				io.Copy(io.Discard, rc)
				rc.Close()
			}
		}
	}
}

// FuzzParseIndex feeds index.json to an OCI layout holding the fixture's
// manifests, config and a nested index.
func FuzzParseIndex(f *testing.F) {
	for _, s := range []string{"layout/index.json", "layout/index-nested.json"} {
		f.Add(readTestdata(f, s))
	}
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"sha256:12a14db9051fefa8b9538fc00462784b8b3b6a648a1b47cb54c6aa04d804a640","size":562}]}`))
	base := seedLayout(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		src := memSource{}
		for k, v := range base {
			src[k] = v
		}
		src[ocispec.ImageIndexFile] = data
		images, err := readLayout(src, "fuzz")
		if err != nil {
			return
		}
		exercise(t, images)
	})
}

// FuzzParseManifest feeds a manifest, named by index.json with its true
// digest and size, so that parsing (not digest checks) is what is fuzzed.
func FuzzParseManifest(f *testing.F) {
	for _, s := range []string{"layout/manifest.json", "layout/manifest-zstd.json", "layout/nested-index.json"} {
		f.Add(readTestdata(f, s), "")
	}
	f.Add(readTestdata(f, "layout/manifest.json"), ocispec.MediaTypeImageManifest)
	f.Add(readTestdata(f, "layout/nested-index.json"), ocispec.MediaTypeImageIndex)
	base := seedLayout(f)
	f.Fuzz(func(t *testing.T, data []byte, mediaType string) {
		src := memSource{}
		for k, v := range base {
			src[k] = v
		}
		d := digest.FromBytes(data)
		src[blobPath(d)] = data
		idx := ocispec.Index{Manifests: []ocispec.Descriptor{{MediaType: mediaType, Digest: d, Size: int64(len(data))}}}
		idx.SchemaVersion = 2
		src[ocispec.ImageIndexFile], _ = json.Marshal(idx)
		images, err := readLayout(src, "fuzz")
		if err != nil {
			return
		}
		exercise(t, images)
	})
}

// FuzzParseConfig feeds an image config, named by a manifest with its true
// digest.
func FuzzParseConfig(f *testing.F) {
	f.Add(readTestdata(f, "layout/config.json"))
	f.Add([]byte(`{"rootfs":{"type":"layers","diff_ids":[]}}`))
	base := seedLayout(f)
	var m ocispec.Manifest
	if err := json.Unmarshal(readTestdata(f, "layout/manifest.json"), &m); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := memSource{}
		for k, v := range base {
			src[k] = v
		}
		m := m
		m.Config.Digest, m.Config.Size = digest.FromBytes(data), int64(len(data))
		src[blobPath(m.Config.Digest)] = data
		raw, _ := json.Marshal(m)
		md := digest.FromBytes(raw)
		src[blobPath(md)] = raw
		idx := ocispec.Index{Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(raw))}}}
		idx.SchemaVersion = 2
		src[ocispec.ImageIndexFile], _ = json.Marshal(idx)
		images, err := readLayout(src, "fuzz")
		if err != nil {
			return
		}
		exercise(t, images)
	})
}

// FuzzParseDockerManifest feeds manifest.json to a docker-archive holding the
// fixture's config and stand-in layer members.
func FuzzParseDockerManifest(f *testing.F) {
	mj := readTestdata(f, "docker/manifest.json")
	f.Add(mj)
	f.Add([]byte(`[{"Config":"blobs/sha256/2b96eb5eb241bc55c29b45ec37aba7217cc0cc4d7c67d7c7bfce3a10cdc024e0","RepoTags":null,"Layers":[]}]`))
	var entries []dockerEntry
	if err := json.Unmarshal(mj, &entries); err != nil {
		f.Fatal(err)
	}
	cfg := readTestdata(f, "layout/config.json")
	base := memSource{
		entries[0].Config:               cfg,
		blobPath(digest.FromBytes(cfg)): cfg,
	}
	for i, l := range entries[0].Layers {
		switch i % 3 { // stand-ins of each kind: plain, gzip and zstd magic
		case 0:
			base[l] = []byte("plain tar stand-in")
		case 1:
			base[l] = []byte{0x1f, 0x8b, 8, 0, 0, 0}
		case 2:
			base[l] = []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}
		}
		base["blobs/sha256/"+strings.TrimSuffix(l, ".tar")] = base[l]
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := memSource{}
		for k, v := range base {
			src[k] = v
		}
		src[dockerManifestFile] = data
		images, err := readDocker(src)
		if err != nil {
			return
		}
		exercise(t, images)
	})
}
