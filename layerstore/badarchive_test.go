package layerstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/layerstore/imagefmt"
)

// copyLayout copies the fixture OCI layout to a temp dir for editing.
func copyLayout(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "oci")
	if out, err := exec.Command("cp", "-a", filepath.Join(dir, "oci"), dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

// layerBlobs lists the layer blob paths of the layout's one image, base first.
func layerBlobs(t *testing.T, layout string) []string {
	t.Helper()
	a, err := imagefmt.Open(layout)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var out []string
	for _, l := range a.Images()[0].Layers {
		out = append(out, filepath.Join(layout, "blobs", "sha256", l.Digest.Encoded()))
	}
	return out
}

// TestStore_Load_BadArchives: each broken archive fails with an error that
// names the problem, and the store is as it was.
func TestStore_Load_BadArchives(t *testing.T) {
	dir := fixtures.Dir(t)
	cases := []struct {
		name  string
		make  func(t *testing.T) string
		want  error
		names string // the error must contain this
	}{
		{"MissingBlob", func(t *testing.T) string {
			l := copyLayout(t, dir)
			b := layerBlobs(t, l)[2]
			os.Remove(b)
			return l
		}, layerstore.ErrMissingBlob, "sha256:"},
		{"CorruptBlob", func(t *testing.T) string {
			l := copyLayout(t, dir)
			b := layerBlobs(t, l)[3]
			data, _ := os.ReadFile(b)
			data[len(data)/2] ^= 0xff
			os.Chmod(b, 0o644)
			os.WriteFile(b, data, 0o644)
			return l
		}, layerstore.ErrCorrupt, "gzip"},
		{"TruncatedBlob", func(t *testing.T) string {
			l := copyLayout(t, dir)
			b := layerBlobs(t, l)[0]
			fi, _ := os.Stat(b)
			os.Truncate(b, fi.Size()/2)
			return l
		}, layerstore.ErrCorrupt, ""},
		{"DiffIDMismatch", func(t *testing.T) string {
			// swap two layer blobs' contents: each still a valid gzip tar, but
			// neither hashes to its name nor to its diff_id
			l := copyLayout(t, dir)
			bs := layerBlobs(t, l)
			a, _ := os.ReadFile(bs[1])
			b, _ := os.ReadFile(bs[2])
			os.WriteFile(bs[1], b, 0o644)
			os.WriteFile(bs[2], a, 0o644)
			return l
		}, nil, "blob sha256:"}, // the size differs first, else the digest
		{"TruncatedArchive", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "demo.docker.tar")
			data, _ := os.ReadFile(filepath.Join(dir, "demo.docker.tar"))
			os.WriteFile(p, data[:len(data)*2/3], 0o644)
			return p
		}, nil, ""},
		{"NoImage", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "notes.txt")
			os.WriteFile(p, []byte(strings.Repeat("not an image\n", 500)), 0o644)
			return p
		}, layerstore.ErrUnknownFormat, "notes.txt"},
		{"RootfsTarball", func(t *testing.T) string { return filepath.Join(dir, "rootfs.tar") }, layerstore.ErrUnknownFormat, "rootfs.tar"},
		{"ManifestBadJSON", func(t *testing.T) string {
			l := copyLayout(t, dir)
			var idx struct {
				Manifests []struct{ Digest string } `json:"manifests"`
			}
			b, _ := os.ReadFile(filepath.Join(l, "index.json"))
			json.Unmarshal(b, &idx)
			m := filepath.Join(l, "blobs", "sha256", strings.TrimPrefix(idx.Manifests[0].Digest, "sha256:"))
			os.Chmod(m, 0o644)
			os.WriteFile(m, []byte("{not json"), 0o644)
			return l
		}, layerstore.ErrDigestMismatch, "manifest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := storetest.Open(t)
			// Something already stored that shares file contents (not layers)
			// with the image: the plain rootfs tarball of its base layer.
			base, err := s.NewImage(context.Background(), layerstore.NewImageOptions{
				Layers: []layerstore.NewLayer{{Open: func() (io.ReadCloser, error) { return os.Open(filepath.Join(dir, "rootfs.tar")) }}},
				Names:  []string{"keep:1"},
			})
			if err != nil {
				t.Fatal(err)
			}
			du1, _ := s.DiskUsage()
			_, err = storetest.LoadArchive(s, c.make(t))
			if err == nil {
				t.Fatal("load succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.names) {
				t.Errorf("err %q does not name %q", err, c.names)
			}
			t.Logf("error: %v", err)
			imgs, _ := s.Images()
			if len(imgs) != 1 || imgs[0].ID != base.ID || len(imgs[0].RepoTags) != 1 {
				t.Errorf("images changed: %+v", imgs)
			}
			du2, _ := s.DiskUsage()
			if du1.Objects != du2.Objects || du1.Layers != du2.Layers {
				t.Errorf("store changed: %d/%d objects, %d/%d layers", du1.Objects, du2.Objects, du1.Layers, du2.Layers)
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestStore_AddImage_PastEndOfArchive: a layer whose tar goes on past its
// end-of-archive marker is stored when what follows is what tars end with
// (a record's padding, up to 1 MiB), and given back byte for byte; one
// that goes on for a gigabyte of zeros (a blob of a few hundred KiB) is
// refused, naming the layer, with its blob read no further than a few
// chunks past the limit, and nothing stored.
func TestStore_AddImage_PastEndOfArchive(t *testing.T) {
	for _, c := range []struct {
		compression string
		tail        int64
		refused     bool
	}{
		{"gzip", 9216, false}, // GNU tar's 10 KiB record
		{"zstd", 1 << 20, false},
		{"none", 1<<20 + 1, true},
		{"gzip", 1 << 30, true},
		{"zstd", 1 << 30, true},
	} {
		t.Run(fmt.Sprintf("%s/%d", c.compression, c.tail), func(t *testing.T) {
			layout, blob := fixtures.PaddedLayout(t, c.compression, c.tail)
			a, err := imagefmt.Open(layout)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			src := a.Images()[0]
			var read atomic.Int64
			open := src.Layers[0].Open
			src.Layers[0].Open = func() (io.ReadCloser, error) {
				rc, err := open()
				return countingReader{rc, &read}, err
			}
			s := storetest.Open(t)
			img, err := s.AddImage(context.Background(), &src, nil)
			size := src.Layers[0].Size
			t.Logf("blob of %d bytes, %d read: %v", size, read.Load(), err)
			if !c.refused {
				if err != nil {
					t.Fatal(err)
				}
				rc, err := s.LayerTar(img.Layers[0])
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				b, err := io.ReadAll(rc)
				if err != nil || digest.FromBytes(b) != img.Layers[0] {
					t.Errorf("LayerTar: %d bytes hashing to %s (%v), want %s", len(b), digest.FromBytes(b), err, img.Layers[0])
				}
				return
			}
			if !errors.Is(err, layerstore.ErrInvalid) || !strings.Contains(err.Error(), string(blob)) || !strings.Contains(err.Error(), "end-of-archive") {
				t.Fatalf("err = %v, want ErrInvalid naming %s and the end-of-archive marker", err, blob)
			}
			if size > 8<<20 && read.Load() > size/4 {
				t.Errorf("read %d bytes of a %d-byte blob to refuse it", read.Load(), size)
			}
			if imgs, _ := s.Images(); len(imgs) != 0 {
				t.Errorf("images stored: %v", imgs)
			}
			if r := storetest.Check(t, s); r != nil && (r.Layers != 0 || r.Objects != 0) {
				t.Errorf("%d layers, %d objects stored", r.Layers, r.Objects)
			}
		})
	}
}
