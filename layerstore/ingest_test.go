package layerstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// loadLayers stores raw layer tars as an archive's image would come in
// (AddImage, the path of load and pull), gzip-compressed with their
// digests and the config's diffIDs to verify.
func loadLayers(t testing.TB, s *Store, name string, raws ...[]byte) (Image, error) {
	t.Helper()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers"}}
	var blobs []LayerBlob
	for _, raw := range raws {
		blob := gz(t, raw)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, sha(raw))
		blobs = append(blobs, LayerBlob{Digest: sha(blob), Size: int64(len(blob)), Open: opener(blob)})
	}
	cfgRaw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	if name != "" {
		names = []string{name}
	}
	return s.AddImage(context.Background(), &ImageSource{ConfigRaw: cfgRaw, Names: names, Layers: blobs}, nil)
}

// assertUnchanged fails unless the store holds exactly the image keep and
// nothing staged.
func assertUnchanged(t *testing.T, s *Store, keep Image) {
	t.Helper()
	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].ID != keep.ID {
		t.Errorf("images after the refused import: %v, want only %s", imgs, keep.ID)
	}
	du, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	if du.Layers != len(keep.Layers) {
		t.Errorf("%d layers after the refused import, want %d", du.Layers, len(keep.Layers))
	}
	if left, _ := readDirNames(s.TmpDir()); len(left) != 0 {
		t.Errorf("staging left behind: %v", left)
	}
}

// A name longer than 255 bytes cannot be unpacked on Linux (tar -x on ext4
// says "File name too long"), so neither import nor load takes it.
func TestIngest_NameTooLong_Refused(t *testing.T) {
	long := strings.Repeat("n", 256)
	cases := []struct {
		name  string
		entry tarEntry
	}{
		{"File", tarEntry{name: "d/" + long, body: "x"}},
		{"Dir", tarEntry{name: long + "/", typ: '5'}},
		{"ParentOfFile", tarEntry{name: long + "/f", body: "x"}},
		{"Symlink", tarEntry{name: long, typ: '2', link: "t"}},
		{"HardLink", tarEntry{name: long, typ: '1', link: "keep"}},
		{"Whiteout", tarEntry{name: "d/.wh." + long}},
	}
	for _, how := range []struct {
		name string
		add  func(testing.TB, *Store, string, ...[]byte) (Image, error)
	}{{"Import", importLayers}, {"Load", loadLayers}} {
		for _, c := range cases {
			t.Run(how.name+"/"+c.name, func(t *testing.T) {
				s := newTestStore(t)
				good, err := how.add(t, s, "good:1", makeTar(t, tarEntry{name: "keep", body: "keep me"}))
				if err != nil {
					t.Fatal(err)
				}
				_, err = how.add(t, s, "bad:1", makeTar(t, tarEntry{name: "keep", body: "keep me"}, c.entry))
				if !errors.Is(err, ErrInvalid) || !errors.Is(err, unix.ENAMETOOLONG) {
					t.Fatalf("err = %v, want ErrInvalid and ENAMETOOLONG", err)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", c.entry.name)) || !strings.Contains(err.Error(), "256 bytes") {
					t.Errorf("err %q does not name the entry and its name's length", err)
				}
				assertUnchanged(t, s, good)
			})
		}
	}
}

// 255 bytes is the limit, not past it; a whiteout's own name may be longer,
// since the name it deletes is what a file system holds.
func TestIngest_NameAtLimit_Accepted(t *testing.T) {
	n255 := strings.Repeat("m", 255)
	s := newTestStore(t)
	img, err := importLayers(t, s, "long:1",
		makeTar(t, tarEntry{name: n255 + "/", typ: '5'}, tarEntry{name: n255 + "/" + n255, body: "x"}),
		makeTar(t, tarEntry{name: n255 + "/.wh." + n255}))
	if err != nil {
		t.Fatal(err)
	}
	_, tree, err := s.ImageTree(string(img.ID))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := tree.Lookup(n255); !ok || d.Type != TypeDir {
		t.Errorf("the directory with a 255-byte name is missing")
	}
	if _, ok := tree.Lookup(n255 + "/" + n255); ok {
		t.Errorf("the whiteout of a 255-byte name did not delete it")
	}
}

// tmpfsStore opens a store on a tmpfs of size bytes, unmounted in cleanup
// (after the store's Check).
func tmpfsStore(t *testing.T, size int) *Store {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return openChecked(t, dir, &Options{LockTimeout: 5 * time.Second})
}

func randomBody(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Running out of space is not bad input: the error says ENOSPC, never
// "corrupt", and the store is as it was.
func TestIngest_NoSpace_NotCorrupt(t *testing.T) {
	cases := []struct {
		name    string
		entries func(t *testing.T) []tarEntry
	}{
		// each file fits the free space on its own, together they do not
		{"LargeFiles", func(t *testing.T) []tarEntry {
			var es []tarEntry
			for i := 0; i < 4; i++ {
				es = append(es, tarEntry{name: fmt.Sprintf("big%d", i), body: randomBody(t, 3<<20/2)})
			}
			return es
		}},
		// small files go through memory and the writer pool
		{"SmallFiles", func(t *testing.T) []tarEntry {
			var es []tarEntry
			for i := 0; i < 80; i++ {
				es = append(es, tarEntry{name: fmt.Sprintf("small%d", i), body: randomBody(t, 100<<10)})
			}
			return es
		}},
		// one file declared larger than the whole file system
		{"DeclaredSize", func(t *testing.T) []tarEntry {
			return []tarEntry{{name: "huge", body: randomBody(t, 8<<20)}}
		}},
	}
	for _, how := range []struct {
		name string
		add  func(testing.TB, *Store, string, ...[]byte) (Image, error)
	}{{"Import", importLayers}, {"Load", loadLayers}} {
		for _, c := range cases {
			t.Run(how.name+"/"+c.name, func(t *testing.T) {
				s := tmpfsStore(t, 4<<20)
				good, err := how.add(t, s, "good:1", makeTar(t, tarEntry{name: "keep", body: "keep me"}))
				if err != nil {
					t.Fatal(err)
				}
				_, err = how.add(t, s, "big:1", makeTar(t, c.entries(t)...))
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("err = %v, want ENOSPC", err)
				}
				if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "corrupt") {
					t.Errorf("err %q blames the input", err)
				}
				assertUnchanged(t, s, good)
			})
		}
	}
}

// The rule for ".wh..wh..opq" at the root is docker's, whatever path the
// layer comes in by: it hides what lower layers put at the root, never what
// its own layer holds. An import is one layer with nothing below it, so
// there the marker hides nothing and only vanishes.
func TestIngest_OpaqueRoot_ImportAndLoadAgree(t *testing.T) {
	lower := makeTar(t, tarEntry{name: "old", body: "old"}, tarEntry{name: "d/", typ: '5'}, tarEntry{name: "d/x", body: "x"})
	upper := makeTar(t, tarEntry{name: "new", body: "new"}, tarEntry{name: ".wh..wh..opq"}, tarEntry{name: "e/", typ: '5'})
	names := func(t *testing.T, s *Store, img Image) []string {
		t.Helper()
		_, tree, err := s.ImageTree(string(img.ID))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		tree.Walk(func(e *Entry) error {
			out = append(out, e.Path)
			return nil
		})
		return out
	}
	for _, c := range []struct {
		name   string
		layers [][]byte
		want   string
	}{
		{"OneLayer", [][]byte{upper}, ",e,new"},
		{"OverLower", [][]byte{lower, upper}, ",e,new"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTestStore(t)
			imp, err := importLayers(t, s, "imp:1", c.layers...)
			if err != nil {
				t.Fatal(err)
			}
			ld, err := loadLayers(t, s, "load:1", c.layers...)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names(t, s, imp), ","); got != c.want {
				t.Errorf("import: tree %q, want %q", got, c.want)
			}
			if got := strings.Join(names(t, s, ld), ","); got != c.want {
				t.Errorf("load: tree %q, want %q", got, c.want)
			}
		})
	}
}

// Every layer of the fuzz corpus (GNU long names, every sparse format GNU
// tar writes, a mix of entry types) is given back byte for byte.
func TestIngest_TestdataLayers_RoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/layers/*.tar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata layers: %v", err)
	}
	for _, p := range files {
		t.Run(filepath.Base(p), func(t *testing.T) {
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			s := newTestStore(t)
			img, err := importLayers(t, s, "", raw)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := s.LayerTar(img.Layers[0])
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("LayerTar gave %d bytes, differing from the %d imported", len(got), len(raw))
			}
		})
	}
}
