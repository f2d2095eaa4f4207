package layerstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
