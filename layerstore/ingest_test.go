package layerstore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
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
			got := layerTar(t, s, img.Layers[0])
			if !bytes.Equal(got, raw) {
				t.Errorf("LayerTar gave %d bytes, differing from the %d imported", len(got), len(raw))
			}
		})
	}
}

// A tar that names one path twice (tar -x keeps the last) must leave a store
// the checker passes, and removing the image must free every object.
func TestIngest_DuplicateEntries_LastWins(t *testing.T) {
	cases := map[string][]tarEntry{
		"FileTwice":    {{name: "f", body: "one"}, {name: "f", body: "two"}},
		"FileThenDir":  {{name: "f", body: "one"}, {name: "f/", typ: tar.TypeDir}},
		"FileThenLink": {{name: "t", body: "target"}, {name: "f", body: "one"}, {name: "f", typ: tar.TypeLink, link: "t"}},
	}
	for name, ents := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := Open(t.TempDir(), &Options{LockTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			img, err := importLayers(t, s, "dup:1", makeTar(t, ents...))
			if err != nil {
				t.Fatal(err)
			}
			checkOK(t, s, "after import")
			// LayerTar still gives back the imported bytes (the first f's
			// content is in the tar, so its object must stay while the layer does).
			rc, err := s.LayerTar(img.Layers[0])
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			_, err = io.Copy(h, rc)
			rc.Close()
			if err != nil || fmt.Sprintf("sha256:%x", h.Sum(nil)) != string(img.Layers[0]) {
				t.Fatalf("LayerTar: %v", err)
			}
			if _, err := s.RemoveImage("dup:1", false); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GC(); err != nil {
				t.Fatal(err)
			}
			mustEmpty(t, s, "after rm and gc")
		})
	}
}

// Bytes of a layer that are not file contents (whiteout bodies, data after
// the end-of-archive marker, sparse file data) are buffered whole in memory
// by the tar splitter and stored as one bbolt value. A small compressed
// blob can make the importer allocate without bound.
func TestIngest_NonContentBytes_Bounded(t *testing.T) {
	const body = 128 << 20
	zeros := make([]byte, 1<<20)
	memCase := func(t *testing.T, raw []byte) {
		blob := gz(t, raw)
		t.Logf("blob: %d bytes compressed, %d uncompressed", len(blob), len(raw))
		raw = nil
		s, err := Open(t.TempDir(), &Options{MaxFileSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = importLayers(t, s, "x:1", blob)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Logf("import refused: %v", err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
			t.Errorf("importing a %d-byte blob allocated %d MiB", len(blob), alloc>>20)
		}
	}
	t.Run("WhiteoutBody", func(t *testing.T) {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		tw.WriteHeader(&tar.Header{Name: "d/.wh.x", Typeflag: tar.TypeReg, Size: body, Mode: 0o644})
		for i := 0; i < body>>20; i++ {
			tw.Write(zeros)
		}
		tw.Close()
		memCase(t, raw.Bytes())
	})
	t.Run("AfterEndMarker", func(t *testing.T) {
		raw := makeTar(t, tarEntry{name: "f", body: "f"})
		for i := 0; i < body>>20; i++ {
			raw = append(raw, zeros...)
		}
		memCase(t, raw)
	})
	// A sparse file's data is its object's; the tar split names ranges of
	// it, in every sparse format GNU tar writes, and still gives back the
	// imported bytes.
	for _, format := range []struct{ name, format, version string }{
		{"gnu", "gnu", ""}, {"oldgnu", "oldgnu", ""},
		{"pax0.0", "posix", "0.0"}, {"pax0.1", "posix", "0.1"}, {"pax1.0", "posix", "1.0"},
	} {
		t.Run("SparseDataStoredOnce/"+format.name, func(t *testing.T) {
			if _, err := exec.LookPath("tar"); err != nil {
				t.Skip("no GNU tar")
			}
			dir := t.TempDir()
			f, err := os.Create(filepath.Join(dir, "disk.img"))
			if err != nil {
				t.Fatal(err)
			}
			// 32 runs of data with holes between them: more fragments than
			// a GNU header holds (extension blocks) and a 1.0 map of more
			// than one block.
			data := make([]byte, 16<<20)
			mrand.New(mrand.NewSource(1)).Read(data)
			const run = 512 << 10
			for i := 0; i < len(data)/run; i++ {
				f.WriteAt(data[i*run:(i+1)*run], int64(i)*(2<<20))
			}
			f.Truncate(80 << 20) // and a hole at the end
			f.Close()
			args := []string{"-C", dir, "--sparse", "--format=" + format.format, "-cf", "-"}
			if format.version != "" {
				args = append(args, "--sparse-version="+format.version)
			}
			raw, err := exec.Command("tar", append(args, "disk.img")...).Output()
			if err != nil {
				t.Fatal(err)
			}
			s := newTestStore(t)
			img, err := importLayers(t, s, "", raw)
			if err != nil {
				t.Fatal(err)
			}
			var split int
			s.view(func(tx *bolt.Tx) error {
				split = len(bucket(tx, bucketLayers).Bucket([]byte(img.Layers[0])).Get(keyTarSplit))
				return nil
			})
			if split == 0 || split > 64<<10 {
				t.Errorf("the tar split of one sparse file is %d bytes, want a few hundred: its %d MiB of data belong to its object", split, len(data)>>20)
			}
			got := layerTar(t, s, img.Layers[0])
			if !bytes.Equal(got, raw) {
				t.Errorf("LayerTar gave %d bytes, differing from the %d imported", len(got), len(raw))
			}
		})
	}
}

// A uid, gid or mtime the entry cannot hold must be refused, not wrapped:
// uid 2^32 (out of range for Linux) silently becomes root.
func TestIngest_HeaderFieldsOutOfRange_Refused(t *testing.T) {
	cases := map[string]*tar.Header{
		"UID2^32":  {Name: "f", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1 << 32, ModTime: time.Unix(1700000000, 0)},
		"GID2^32":  {Name: "f", Typeflag: tar.TypeReg, Mode: 0o2755, Gid: 1<<32 + 5, ModTime: time.Unix(1700000000, 0)},
		"Year2300": {Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			h.Format = tar.FormatPAX
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Close()
			s := newTestStore(t)
			img, err := importLayers(t, s, "", buf.Bytes())
			if err != nil {
				return // refused: fine
			}
			_, tree, err := s.ImageTree(string(img.ID))
			if err != nil {
				t.Fatal(err)
			}
			e, _ := tree.Lookup("f")
			if int64(e.UID) != int64(h.Uid) || int64(e.GID) != int64(h.Gid) {
				t.Errorf("owner %d:%d, header says %d:%d", e.UID, e.GID, h.Uid, h.Gid)
			}
			// A time int64 nanoseconds cannot hold is clamped to the
			// nearest one they can, never wrapped.
			want := h.ModTime
			if want.After(time.Unix(0, math.MaxInt64)) {
				want = time.Unix(0, math.MaxInt64)
			}
			if !time.Unix(0, e.Mtime).Equal(want) {
				t.Errorf("mtime %s, header says %s (want %s)", time.Unix(0, e.Mtime).UTC(), h.ModTime, want.UTC())
			}
		})
	}
}

// Names that clean to a place inside the layer are stored clean; names that
// climb out are refused; no stored path is unclean.
func TestIngest_Paths_CleanedOrRefused(t *testing.T) {
	ok := map[string]string{
		"a//b":         "a/b",
		"./a/./b/":     "a/b",
		"/abs/x":       "abs/x",
		"a/../b":       "b",
		"a/b/../../c":  "c",
		"../":          "", // climbs out: refused below
		"x/..":         "",
		"///":          "",
		"a/.wh.b/c":    "a/.wh.b/c",
		"./":           "",
		"a/b/c/../../": "a",
	}
	for in, want := range ok {
		got, err := cleanPath(in)
		if in == "../" {
			if err == nil {
				t.Errorf("cleanPath(%q) = %q, want refusal", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"..", "../x", "a/../../x", "/../x", "a/b/../../../x", "a\x00b", "./.."} {
		if got, err := cleanPath(bad); err == nil {
			t.Errorf("cleanPath(%q) = %q, want an error", bad, got)
		}
	}
	// Over the whole import: store and tree hold only clean paths, and no
	// file appears outside the store root.
	outside := t.TempDir()
	s := newTestStore(t)
	layer := makeTar(t,
		tarEntry{name: "./", typ: tar.TypeDir, mode: 0o700},
		tarEntry{name: "a//b/", typ: tar.TypeDir},
		tarEntry{name: "a//b//c", body: "c"},
		tarEntry{name: "/abs", body: "abs"},
		tarEntry{name: "q/../r", body: "r"},
		tarEntry{name: "l", typ: tar.TypeLink, link: "/a/b/../b/c"},
		tarEntry{name: "s", typ: tar.TypeSymlink, link: "../../../../" + outside + "/x"},
	)
	img, err := importLayers(t, s, "", layer)
	if err != nil {
		t.Fatal(err)
	}
	_, tree, err := s.ImageTree(string(img.ID))
	if err != nil {
		t.Fatal(err)
	}
	tree.Walk(func(e *Entry) error {
		if c, err := cleanPath(e.Path); err != nil || c != e.Path {
			t.Errorf("unclean path %q in tree", e.Path)
		}
		return nil
	})
	root, _ := tree.Lookup("")
	if root.Mode != 0o700 {
		t.Errorf("root mode %o, want the layer's 0700", root.Mode)
	}
	l, _ := tree.Lookup("l")
	c, _ := tree.Lookup("a/b/c")
	if l == nil || c == nil || l.Ino != c.Ino || c.Nlink != 2 {
		t.Errorf("hard link through an absolute, dotted name: %+v %+v", l, c)
	}
	if names, _ := readDirNames(outside); len(names) != 0 {
		t.Errorf("import wrote outside the store: %v", names)
	}
}

// A layer already stored is not read again; the blob offered for it is then
// never verified, and the manifest naming it is stored as if it had been.
func TestIngest_KnownLayer_BlobNotRead(t *testing.T) {
	s := newTestStore(t)
	raw := makeTar(t, tarEntry{name: "a", body: "a"})
	good := gz(t, raw)
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}`, sha(raw)))
	if _, err := s.AddImage(context.Background(), &ImageSource{ConfigRaw: cfg, Names: []string{"good:1"},
		Layers: []LayerBlob{{Digest: sha(good), Size: int64(len(good)), Open: opener(good)}}}, nil); err != nil {
		t.Fatal(err)
	}
	// Same config (so same diffID), another manifest, and a blob that is not
	// what its digest says.
	bad := []byte("this is not a gzip of anything")
	cfg2 := append([]byte(nil), cfg...)
	cfg2 = append(cfg2[:len(cfg2)-1], []byte(`,"config":{"Env":["X=1"]}}`)...)
	_, err := s.AddImage(context.Background(), &ImageSource{ConfigRaw: cfg2, Names: []string{"bad:1"},
		Layers: []LayerBlob{{Digest: sha([]byte("claimed")), Size: int64(len(bad)), Open: opener(bad)}}}, nil)
	if err == nil {
		t.Fatal("a blob that does not hash to its digest was accepted because its diffID was already stored")
	}
	if imgs, _ := s.Images(); len(imgs) != 1 {
		t.Errorf("%d images after the refused import", len(imgs))
	}
}

// An import cancelled while staging leaves nothing behind; one that fails at
// commit leaves only garbage that Check allows and GC removes.
func TestIngest_Failed_LeavesOnlyGarbage(t *testing.T) {
	s := newTestStore(t)
	if _, err := importLayers(t, s, "keep:1", makeTar(t, tarEntry{name: "k", body: "keep"})); err != nil {
		t.Fatal(err)
	}
	t.Run("Cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		layer := makeTar(t, tarEntry{name: "a", body: "aaaa"}, tarEntry{name: "b", body: strings.Repeat("b", smallFile+1)}, tarEntry{name: "c", body: "cccc"})
		open := func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(bytes.NewReader(layer[:len(layer)/2]), readFn(func([]byte) (int, error) {
				cancel()
				return 0, io.EOF
			}), bytes.NewReader(layer[len(layer)/2:]))), nil
		}
		_, err := s.NewImage(ctx, NewImageOptions{Layers: []NewLayer{{Open: open}}, Names: []string{"cancel:1"}})
		if err == nil {
			t.Fatal("cancelled import succeeded")
		}
		r := checkOK(t, s, "after cancel")
		if len(r.Garbage) != 0 {
			t.Errorf("garbage after a cancelled import: %v", r.Garbage)
		}
	})
	t.Run("CommitFails", func(t *testing.T) {
		// an empty name is refused by bbolt inside the commit, after publish
		_, err := s.NewImage(context.Background(), NewImageOptions{Names: []string{""},
			Layers: []NewLayer{{Open: opener(makeTar(t, tarEntry{name: "z", body: "zzzz"}))}}})
		if err == nil {
			t.Fatal("import with an empty name succeeded")
		}
		r := checkOK(t, s, "after a failed commit")
		if imgs, _ := s.Images(); len(imgs) != 1 {
			t.Errorf("%d images after a failed commit", len(imgs))
		}
		if _, err := s.GC(); err != nil {
			t.Fatal(err)
		}
		if r = checkOK(t, s, "after gc"); len(r.Garbage) != 0 {
			t.Errorf("garbage after gc: %v", r.Garbage)
		}
		if _, err := os.Stat(s.ObjectPath(sha([]byte("zzzz")))); !os.IsNotExist(err) {
			t.Errorf("object of the failed import after gc: %v", err)
		}
	})
}

type readFn func([]byte) (int, error)

func (f readFn) Read(p []byte) (int, error) { return f(p) }

// TestIngest_ObjectRecordVanished_Refused: an import counts on the objects
// it found recorded (looked up as the layer that holds them ends) and does
// not write them again; if one's record is gone by its commit (here
// another program deletes it while a second layer is read; under the
// store lock nothing of strata's can), the import fails with ErrCorrupt
// and stores nothing, rather than take a reference that makes a new
// record, of one reference, for an object two layers name.
func TestIngest_ObjectRecordVanished_Refused(t *testing.T) {
	s, err := Open(t.TempDir(), &Options{LockTimeout: 5 * time.Second, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	shared := sha([]byte("shared content"))
	if _, err := importLayers(t, s, "a:1", makeTar(t, tarEntry{name: "shared", body: "shared content"})); err != nil {
		t.Fatal(err)
	}
	var saved []byte
	first := make(chan struct{}) // the layer with the shared content is read, and its objects looked up
	second := &vanishing{r: bytes.NewReader(makeTar(t, tarEntry{name: "own", body: "own content"})),
		vanish: func() {
			select {
			case <-first:
			case <-time.After(10 * time.Second):
				t.Error("the first layer did not end")
			}
			rawUpdate(t, s, func(r *bolt.Bucket) error {
				ob := r.Bucket(bucketObjects)
				saved = append([]byte(nil), ob.Get([]byte(shared))...)
				return ob.Delete([]byte(shared))
			})
		}}
	_, err = s.NewImage(context.Background(), NewImageOptions{Names: []string{"b:1"},
		Layers: []NewLayer{
			{Open: opener(makeTar(t, tarEntry{name: "copy", body: "shared content"}))},
			{Open: func() (io.ReadCloser, error) { return io.NopCloser(second), nil }},
		},
		Progress: func(p Progress) {
			if p.Layer == 0 && p.Finished {
				close(first)
			}
		}})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), string(shared)) {
		t.Errorf("import with a vanished object record: %v, want ErrCorrupt naming %s", err, shared)
	}
	if _, err := s.ResolveImage("b:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b:1 stored: %v", err)
	}
	// Put the record back: the store is as it was, and clean.
	rawUpdate(t, s, func(r *bolt.Bucket) error { return r.Bucket(bucketObjects).Put([]byte(shared), saved) })
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
}

// An object file a crash left in objects/ without a record (garbage, for
// GC) is taken in by the next import of its content: the import does not
// count on it before it looks its record up, and then it publishes the
// content as its own, with a record.
func TestIngest_OrphanObjectFile_TakenIn(t *testing.T) {
	s := newTestStore(t)
	body := []byte("left by a crash")
	d := sha(body)
	if err := os.WriteFile(s.ObjectPath(d), body, 0o400); err != nil {
		t.Fatal(err)
	}
	if r := checkOK(t, s, "with the orphan"); len(r.Garbage) != 1 {
		t.Fatalf("garbage %v, want the orphan object", r.Garbage)
	}
	if _, err := importLayers(t, s, "x:1", makeTar(t, tarEntry{name: "f", body: string(body)})); err != nil {
		t.Fatal(err)
	}
	if refs := objectRefs(t, s)[d]; refs != 1 {
		t.Errorf("the object has %d references, want 1", refs)
	}
}

// vanishing reads r, calling vanish before its first read.
type vanishing struct {
	r      io.Reader
	vanish func()
	once   bool
}

func (v *vanishing) Read(p []byte) (int, error) {
	if !v.once {
		v.once = true
		v.vanish()
	}
	return v.r.Read(p)
}
