package imagefmt

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/layerstore"
)

// The fixture image, as make-fixtures.sh builds it.
const (
	fixtureLayers = 5
	fixtureName   = "demo:latest"
)

// fixture returns the path of a fixture (see internal/fixtures).
func fixture(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(fixtures.Dir(t), name)
}

// copyDir copies the directory tree src to a new directory under t.TempDir().
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// layout is an OCI layout directory a test edits.
type layout struct {
	t   testing.TB
	dir string
}

// copyLayout copies the fixture's OCI layout for a test to edit.
func copyLayout(t testing.TB) layout {
	t.Helper()
	return layout{t: t, dir: copyDir(t, fixture(t, "oci"))}
}

func (l layout) path(d digest.Digest) string {
	return filepath.Join(l.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// readJSON reads file (relative to the layout) into v.
func (l layout) readJSON(file string, v any) {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.dir, file))
	if err != nil {
		l.t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		l.t.Fatal(err)
	}
}

func (l layout) writeFile(file string, b []byte) {
	l.t.Helper()
	p := filepath.Join(l.dir, file)
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		l.t.Fatal(err)
	}
}

// writeBlob stores b as a blob and returns its descriptor.
func (l layout) writeBlob(mediaType string, b []byte) ocispec.Descriptor {
	l.t.Helper()
	d := digest.FromBytes(b)
	l.writeFile(filepath.Join("blobs", "sha256", d.Encoded()), b)
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (l layout) index() ocispec.Index {
	var idx ocispec.Index
	l.readJSON("index.json", &idx)
	return idx
}

func (l layout) setIndex(idx ocispec.Index) { l.writeFile("index.json", mustJSON(l.t, idx)) }

// manifest returns the first index.json entry's manifest.
func (l layout) manifest() (ocispec.Descriptor, ocispec.Manifest) {
	l.t.Helper()
	desc := l.index().Manifests[0]
	var m ocispec.Manifest
	l.readJSON(filepath.Join("blobs", "sha256", desc.Digest.Encoded()), &m)
	return desc, m
}

// setManifest stores raw as the first index.json entry's manifest, keeping
// the entry's annotations.
func (l layout) setManifest(raw []byte) ocispec.Descriptor {
	l.t.Helper()
	idx := l.index()
	desc := l.writeBlob(ocispec.MediaTypeImageManifest, raw)
	desc.Annotations = idx.Manifests[0].Annotations
	idx.Manifests[0] = desc
	l.setIndex(idx)
	return desc
}

// editConfig rewrites the config with edit, and the manifest and index.json
// to name the new config.
func (l layout) editConfig(edit func(c map[string]any)) digest.Digest {
	l.t.Helper()
	_, m := l.manifest()
	var c map[string]any
	l.readJSON(filepath.Join("blobs", "sha256", m.Config.Digest.Encoded()), &c)
	edit(c)
	m.Config = l.writeBlob(m.Config.MediaType, mustJSON(l.t, c))
	l.setManifest(mustJSON(l.t, m))
	return m.Config.Digest
}

// tarEntry is one member of a tar a test builds.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func readTar(t testing.TB, path string) []tarEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []tarEntry
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{hdr: *hdr, data: data})
	}
}

func writeTar(t testing.TB, path string, entries []tarEntry) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}
}

func reg(name string, data []byte) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg}, data: data}
}

// replaceEntry returns entries with the member name's data replaced.
func replaceEntry(entries []tarEntry, name string, data []byte) []tarEntry {
	out := make([]tarEntry, 0, len(entries))
	for _, e := range entries {
		if e.hdr.Name == name {
			e.data = data
		}
		out = append(out, e)
	}
	return out
}

// compressFile writes src compressed with c ("gzip" or "zstd") to a new file.
func compressFile(t testing.TB, src, c string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), filepath.Base(src)+"."+c)
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	var w io.WriteCloser
	switch c {
	case CompressionGzip:
		w = gzip.NewWriter(out)
	case CompressionZstd:
		if w, err = zstd.NewWriter(out); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("compression %q", c)
	}
	if _, err := io.Copy(w, in); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(w.Close(), out.Close()); err != nil {
		t.Fatal(err)
	}
	return dst
}

// checkLayers reads every layer blob concurrently and checks that it hashes to
// LayerBlob.Digest, has LayerBlob.Size bytes, and decompresses (as its media type
// says) to a tar that hashes to LayerBlob.DiffID.
func checkLayers(t *testing.T, img layerstore.ImageSource) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(img.Layers))
	for i, l := range img.Layers {
		wg.Go(func() { errs[i] = checkLayer(l) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("layer %d %s: %v", i, img.Layers[i].Digest, err)
		}
	}
}

func checkLayer(l layerstore.LayerBlob) error {
	rc, err := l.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	blob := sha256.New()
	n, err := io.Copy(blob, rc)
	if err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(blob.Sum(nil)); got != l.Digest.String() {
		return errors.New("blob hashes to " + got)
	}
	if n != l.Size {
		return errors.New("blob size differs from LayerBlob.Size")
	}
	// Read it again, decompressed, for the diffID.
	rc2, err := l.Open()
	if err != nil {
		return err
	}
	defer rc2.Close()
	c, ok := LayerCompression(l.MediaType)
	if !ok {
		return errors.New("unsupported media type " + l.MediaType)
	}
	var tarHash = sha256.New()
	switch c {
	case CompressionNone:
		_, err = io.Copy(tarHash, rc2)
	default:
		err = decompress(tarHash, rc2, c)
	}
	if err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(tarHash.Sum(nil)); got != l.DiffID.String() {
		return errors.New("tar hashes to " + got + ", not the diffID")
	}
	return nil
}

// wantErr checks that err wraps sentinel and that its message holds each of
// the fragments.
func wantErr(t testing.TB, err, sentinel error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one wrapping %q", sentinel)
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not wrap %q", err, sentinel)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}

// openOK opens path, failing the test on error, and closes it at cleanup.
func openOK(t testing.TB, path string) *Archive {
	t.Helper()
	a, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a
}
