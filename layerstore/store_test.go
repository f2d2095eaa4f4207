package layerstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestEntry_MarshalRoundTrip(t *testing.T) {
	in := Entry{Type: TypeChar, Mode: 0o4755, UID: 1000, GID: 7, Size: 1 << 40, Mtime: -5, Link: "../x", HardLink: "a/b",
		Devmajor: 1, Devminor: 3, Digest: sha([]byte("x")), Xattrs: map[string]string{"user.a": "1", "trusted.b": "\x00\xff"}, Ino: 99, Nlink: 3}
	b, _ := in.MarshalBinary()
	var out Entry
	if err := out.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	out.Path = in.Path
	ib, _ := json.Marshal(in)
	ob, _ := json.Marshal(out)
	if string(ib) != string(ob) {
		t.Fatalf("round trip:\n%s\n%s", ib, ob)
	}
	for i := range b {
		var e Entry
		if err := e.UnmarshalBinary(b[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", i)
		}
	}
}

func TestKey_ChildrenContiguous(t *testing.T) {
	paths := []string{"a", "a/b", "a/b/c", "a.b", "a/b.c", "ab", "a/c", ""}
	for _, p := range paths {
		if got := PathOfKey(Key(p)); got != p {
			t.Errorf("PathOfKey(Key(%q)) = %q", p, got)
		}
	}
	// every child of "a" has the prefix, nothing else does
	pre := string(ChildPrefix("a"))
	for _, p := range paths {
		has := strings.HasPrefix(string(Key(p)), pre)
		want := parentOf(p) == "a" && p != ""
		if has != want {
			t.Errorf("%q: under prefix %v, want %v", p, has, want)
		}
	}
}

func TestStore_NewImage_Layers(t *testing.T) {
	s := newTestStore(t)
	l1 := makeTar(t,
		tarEntry{name: "./", typ: '5', mode: 0o755},
		tarEntry{name: "etc/", typ: '5', mode: 0o755},
		tarEntry{name: "etc/motd", body: "hello", xattrs: map[string]string{"user.k": "v"}},
		tarEntry{name: "bin/busybox", body: "BB", mode: 0o755},
		tarEntry{name: "bin/sh", typ: '1', link: "bin/busybox"},
		tarEntry{name: "bin/ls", typ: '1', link: "./bin/busybox"},
		tarEntry{name: "usr/link", typ: '2', link: "../etc/motd"},
		tarEntry{name: "dev/null", typ: '3', mode: 0o666, major: 1, minor: 3},
		tarEntry{name: "pipe", typ: '6'},
		tarEntry{name: "old/a", body: "a"},
		tarEntry{name: "old/b", body: "b"},
		tarEntry{name: "opq/x", body: "x"},
	)
	l2 := makeTar(t,
		tarEntry{name: "old/.wh.a", body: ""},
		tarEntry{name: "opq/.wh..wh..opq", body: ""},
		tarEntry{name: "opq/y", body: "y"},
		tarEntry{name: "bin/.wh.ls", body: ""},
		tarEntry{name: "etc/motd", body: "hello"}, // same content: one object
	)
	img, err := importLayers(t, s, "t:1", gz(t, l1), zst(t, l2))
	if err != nil {
		t.Fatal(err)
	}
	if img.RepoTags[0] != "t:1" || len(img.Layers) != 2 {
		t.Fatalf("image %+v", img)
	}
	_, tree, err := s.ImageTree("t:1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Type{"etc": TypeDir, "etc/motd": TypeReg, "bin/busybox": TypeReg, "bin/sh": TypeReg, "usr/link": TypeSymlink,
		"dev/null": TypeChar, "pipe": TypeFifo, "old/b": TypeReg, "opq/y": TypeReg, "usr": TypeDir}
	for p, typ := range want {
		e, ok := tree.Lookup(p)
		if !ok || e.Type != typ {
			t.Errorf("%s: got %+v, want a %s", p, e, typ)
		}
	}
	for _, p := range []string{"old/a", "opq/x", "bin/ls", "old/.wh.a", "opq/.wh..wh..opq"} {
		if _, ok := tree.Lookup(p); ok {
			t.Errorf("%s: present, want gone", p)
		}
	}
	bb, _ := tree.Lookup("bin/busybox")
	sh, _ := tree.Lookup("bin/sh")
	if bb.Ino != sh.Ino || bb.Nlink != 2 || sh.Nlink != 2 {
		t.Errorf("hard links: busybox ino %d nlink %d, sh ino %d nlink %d; want one inode, 2 links", bb.Ino, bb.Nlink, sh.Ino, sh.Nlink)
	}
	motd, _ := tree.Lookup("etc/motd")
	if motd.Xattrs != nil {
		t.Errorf("etc/motd replaced by layer 2 without xattrs, got %v", motd.Xattrs)
	}
	if got, _ := os.ReadFile(s.ObjectPath(motd.Digest)); string(got) != "hello" {
		t.Errorf("motd object = %q", got)
	}
	dn, _ := tree.Lookup("dev/null")
	if dn.Devmajor != 1 || dn.Devminor != 3 || dn.Mode != 0o666 {
		t.Errorf("dev/null: %+v", dn)
	}
	if names := childNames(tree, "opq"); strings.Join(names, ",") != "y" {
		t.Errorf("opaque dir children %v, want [y]", names)
	}
	du, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	// contents: hello, BB, a, b, x, y -> 6 distinct objects
	if du.Objects != 6 {
		t.Errorf("objects = %d, want 6 (identical contents stored once)", du.Objects)
	}
}

func childNames(t *Tree, dir string) []string {
	var out []string
	for _, e := range t.Children(dir) {
		out = append(out, e.Name())
	}
	return out
}

func TestStore_Dedup_AcrossImages(t *testing.T) {
	s := newTestStore(t)
	big := strings.Repeat("z", 1<<20)
	a := makeTar(t, tarEntry{name: "big", body: big}, tarEntry{name: "a", body: "only a"})
	b := makeTar(t, tarEntry{name: "copy/big", body: big}, tarEntry{name: "b", body: "only b"})
	if _, err := importLayers(t, s, "a:1", a); err != nil {
		t.Fatal(err)
	}
	if _, err := importLayers(t, s, "b:1", b); err != nil {
		t.Fatal(err)
	}
	du, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	if du.Objects != 3 || du.ObjectsSize != int64(len(big))+12 {
		t.Errorf("objects %d (%d bytes), want 3 (%d bytes)", du.Objects, du.ObjectsSize, len(big)+12)
	}
	for _, iu := range du.Images {
		if iu.SharedSize != int64(len(big)) || iu.UniqueSize != 6 {
			t.Errorf("image %v: shared %d unique %d", iu.RepoTags, iu.SharedSize, iu.UniqueSize)
		}
	}
	rep, err := s.RemoveImage("a:1", false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.DeletedImages != 1 || len(rep.Untagged) != 1 {
		t.Errorf("rm report %+v", rep)
	}
	// the shared object must survive for b
	_, tree, err := s.ImageTree("b:1")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := tree.Lookup("copy/big")
	if _, err := os.Stat(s.ObjectPath(e.Digest)); err != nil {
		t.Fatalf("shared object gone after rm of the other image: %v", err)
	}
	if _, err := s.Prune(true); err != nil {
		t.Fatal(err)
	}
	du, _ = s.DiskUsage()
	if du.Objects != 0 || len(du.Images) != 0 || du.Layers != 0 {
		t.Errorf("after prune -a: %+v", du)
	}
	left, _ := filepath.Glob(filepath.Join(s.Root(), "objects", "*", "*"))
	if len(left) != 0 {
		t.Errorf("object files left after prune -a: %v", left)
	}
}

func TestStore_RemoveImage_Tags(t *testing.T) {
	s := newTestStore(t)
	img, err := importLayers(t, s, "x:1", makeTar(t, tarEntry{name: "f", body: "f"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("x:1", "y:2"); err != nil {
		t.Fatal(err)
	}
	// an ID naming an image with two tags needs force
	var ce *ConflictError
	if _, err := s.RemoveImage(img.ID.Encoded()[:8], false); !errors.As(err, &ce) {
		t.Fatalf("rm by ID with two tags: %v, want a conflict", err)
	}
	rep, err := s.RemoveImage("y:2", false)
	if err != nil || rep.DeletedImages != 0 || rep.Untagged[0] != "y:2" {
		t.Fatalf("rm y:2: %+v %v", rep, err)
	}
	rep, err = s.RemoveImage("x", false) // x means x:latest: not there
	var nsi *NoSuchImageError
	if !errors.As(err, &nsi) || err.Error() != "No such image: x:latest" {
		t.Fatalf("rm x: %v", err)
	}
	rep, err = s.RemoveImage("x:1", false)
	if err != nil || rep.DeletedImages != 1 {
		t.Fatalf("rm x:1: %+v %v", rep, err)
	}
	if _, err := s.ResolveImage(string(img.ID)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resolve after rm: %v", err)
	}
}

func TestStore_ResolveImage_Ambiguous(t *testing.T) {
	s := newTestStore(t)
	// Make images until two IDs share a first hex digit pair; with 4-digit
	// minimum prefixes we test ambiguity by inserting records directly.
	var ids []digest.Digest
	for i := 0; i < 40 && len(ids) < 2; i++ {
		img, err := s.NewImage(context.Background(), NewImageOptions{Edit: func(c *ocispec.Image) error {
			c.Config.Env = []string{"N=" + strings.Repeat("x", i)}
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, img.ID)
	}
	if _, err := s.ResolveImage(ids[0].Encoded()[:12]); err != nil {
		t.Fatalf("unique prefix: %v", err)
	}
	if _, err := s.ResolveImage("sha256:" + ids[0].Encoded()[:12]); err != nil {
		t.Fatalf("unique prefix with algorithm: %v", err)
	}
}

func TestStore_Bad(t *testing.T) {
	huge := makeTar(t, tarEntry{name: "huge", size: 1 << 60})
	cases := []struct {
		name string
		blob []byte
		want error
		msg  string
	}{
		{"TraversalName", makeTar(t, tarEntry{name: "../../etc/passwd", body: "x"}), ErrInvalid, "leaves the layer"},
		{"TraversalDeep", makeTar(t, tarEntry{name: "a/../../b", body: "x"}), ErrInvalid, "leaves the layer"},
		{"TraversalHardLink", makeTar(t, tarEntry{name: "a", typ: '1', link: "../../etc/shadow"}), ErrInvalid, "leaves the layer"},
		{"HardLinkMissing", makeTar(t, tarEntry{name: "a", typ: '1', link: "nothere"}), ErrInvalid, "not an earlier entry"},
		{"HardLinkToDir", makeTar(t, tarEntry{name: "d", typ: '5'}, tarEntry{name: "a", typ: '1', link: "d"}), ErrInvalid, `hard link to "d", which is a dir: only regular files`},
		{"HardLinkToSymlink", makeTar(t, tarEntry{name: "s", typ: '2', link: "t"}, tarEntry{name: "a", typ: '1', link: "s"}), ErrInvalid, `hard link to "s", which is a symlink: only regular files`},
		{"HardLinkToFifo", makeTar(t, tarEntry{name: "p", typ: '6'}, tarEntry{name: "a", typ: '1', link: "p"}), ErrInvalid, `hard link to "p", which is a fifo`},
		{"EnormousSize", huge, syscall.ENOSPC, "exceeds"},
		{"Truncated", makeTar(t, tarEntry{name: "a", body: strings.Repeat("x", 10000)})[:3000], ErrCorrupt, "unexpected EOF"},
		{"CorruptGzip", corruptMiddle(gz(t, makeTar(t, tarEntry{name: "a", body: strings.Repeat("xy", 5000)}))), ErrCorrupt, ""},
		{"CorruptZstd", corruptMiddle(zst(t, makeTar(t, tarEntry{name: "a", body: strings.Repeat("xy", 5000)}))), ErrCorrupt, ""},
		{"NotATar", []byte(strings.Repeat("this is no tar archive\n", 100)), ErrCorrupt, "read tar"},
		{"RootNotDir", makeTar(t, tarEntry{name: "./", body: "x"}), ErrInvalid, "root must be a directory"},
		{"UnnamedWhiteout", makeTar(t, tarEntry{name: "d/.wh.", body: ""}), ErrInvalid, "whiteout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestStore(t)
			good, err := importLayers(t, s, "good:1", makeTar(t, tarEntry{name: "keep", body: "keep me"}))
			if err != nil {
				t.Fatal(err)
			}
			_, err = importLayers(t, s, "bad:1", c.blob)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want it to say %q", err, c.msg)
			}
			imgs, err := s.Images()
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || imgs[0].ID != good.ID {
				t.Errorf("images after failed import: %d, want only the good one", len(imgs))
			}
			du, _ := s.DiskUsage()
			if du.Layers != 1 || du.Objects != 1 {
				t.Errorf("after failed import: %d layers, %d objects; want 1, 1", du.Layers, du.Objects)
			}
			if left, _ := readDirNames(s.TmpDir()); len(left) != 0 {
				t.Errorf("staging left behind: %v", left)
			}
		})
	}
}

func corruptMiddle(b []byte) []byte {
	c := append([]byte(nil), b...)
	for i := len(c) / 3; i < len(c)/3+16 && i < len(c); i++ {
		c[i] ^= 0x5a
	}
	return c
}

func TestStore_AddImage_DigestMismatch(t *testing.T) {
	layer := gz(t, makeTar(t, tarEntry{name: "a", body: "a"}))
	raw := makeTar(t, tarEntry{name: "a", body: "a"})
	cfg := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{sha(raw)}}}
	cfgRaw, _ := json.Marshal(cfg)
	badCfg, _ := json.Marshal(ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{sha([]byte("other"))}}})
	cases := []struct {
		name string
		src  ImageSource
		msg  string
	}{
		{"Blob", ImageSource{ConfigRaw: cfgRaw, Layers: []LayerBlob{{Digest: sha([]byte("nope")), Size: int64(len(layer)), Open: opener(layer)}}}, "blob sha256:"},
		{"BlobSize", ImageSource{ConfigRaw: cfgRaw, Layers: []LayerBlob{{Digest: sha(layer), Size: 5, Open: opener(layer)}}}, "manifest says 5"},
		{"DiffID", ImageSource{ConfigRaw: badCfg, Layers: []LayerBlob{{Digest: sha(layer), Size: int64(len(layer)), Open: opener(layer)}}}, "diff_id"},
		{"Config", ImageSource{ConfigRaw: cfgRaw, ConfigDigest: sha([]byte("x")), Layers: []LayerBlob{{Digest: sha(layer), Size: int64(len(layer)), Open: opener(layer)}}}, "config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestStore(t)
			_, err := s.AddImage(context.Background(), &c.src, nil)
			if !errors.Is(err, ErrDigestMismatch) && !errors.Is(err, ErrSizeMismatch) {
				t.Fatalf("err = %v, want a digest or size mismatch", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err %q does not say %q", err, c.msg)
			}
			if imgs, _ := s.Images(); len(imgs) != 0 {
				t.Errorf("%d images stored", len(imgs))
			}
			if du, _ := s.DiskUsage(); du.Objects != 0 || du.Layers != 0 {
				t.Errorf("stored %d objects, %d layers", du.Objects, du.Layers)
			}
		})
	}
	t.Run("Good", func(t *testing.T) {
		s := newTestStore(t)
		img, err := s.AddImage(context.Background(), &ImageSource{ConfigRaw: cfgRaw, Names: []string{"ok:1"}, Layers: []LayerBlob{{Digest: sha(layer), Size: int64(len(layer)), Open: opener(layer)}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if img.ID != sha(cfgRaw) {
			t.Errorf("ID %s, want config digest %s", img.ID, sha(cfgRaw))
		}
	})
}

func TestStore_GC_Garbage(t *testing.T) {
	s := newTestStore(t)
	if _, err := importLayers(t, s, "k:1", makeTar(t, tarEntry{name: "a", body: "a"})); err != nil {
		t.Fatal(err)
	}
	// what a crash leaves: an unreferenced object, staging, a mount dir without lease
	stray := s.ObjectPath(sha([]byte("stray")))
	os.WriteFile(stray, []byte("stray"), 0o400)
	os.MkdirAll(filepath.Join(s.TmpDir(), "import-123"), 0o700)
	os.MkdirAll(s.MountDir("dead"), 0o700)
	r, err := s.Check(true)
	if err != nil || !r.OK() || len(r.Garbage) != 3 {
		t.Fatalf("check: %+v %v; want OK with 3 garbage", r, err)
	}
	g, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if g.Objects != 1 || g.Staging != 1 {
		t.Errorf("gc: %+v", g)
	}
	r, _ = s.Check(true)
	if len(r.Garbage) != 0 {
		t.Errorf("garbage after gc: %v", r.Garbage)
	}
	if _, tree, err := s.ImageTree("k:1"); err != nil || tree.Len() != 2 {
		t.Errorf("image after gc: %v", err)
	}
}

// TestStore_LayerTar_RoundTrip: every testdata layer (sparse files, long
// names, xattrs, hard links, whiteouts) comes back byte for byte.
func TestStore_LayerTar_RoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/layers/*.tar")
	if len(files) == 0 {
		t.Fatal("no testdata layers")
	}
	s := newTestStore(t)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		img, err := importLayers(t, s, "", zst(t, data))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got := layerTar(t, s, img.Layers[0])
		if !bytes.Equal(got, data) {
			t.Errorf("%s: LayerTar gave %d bytes, differing from the %d imported", f, len(got), len(data))
		}
	}
	// A missing object is an error, not a short tar.
	img, err := importLayers(t, s, "big:1", makeTar(t, tarEntry{name: "f", body: "some content"}))
	if err != nil {
		t.Fatal(err)
	}
	p := s.ObjectPath(sha([]byte("some content")))
	os.Rename(p, p+".away")
	defer os.Rename(p+".away", p)
	rc, err := s.LayerTar(img.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil {
		t.Fatal("LayerTar with a missing object read to the end")
	}
}

// countReader counts the bytes read from it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestStore_AddImage_BlobPastSize: a blob that goes on past its declared
// size is refused as a size mismatch, and no more than one byte past that
// size is read (a registry sending without end would otherwise fill a
// pull's download).
func TestStore_AddImage_BlobPastSize(t *testing.T) {
	raw := makeTar(t, tarEntry{name: "a", body: "a"})
	layer := gz(t, raw)
	cfgRaw, _ := json.Marshal(ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{sha(raw)}}})
	junk := &countReader{r: bytes.NewReader(make([]byte, 16<<20))}
	open := func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(bytes.NewReader(layer), junk)), nil
	}
	s := newTestStore(t)
	_, err := s.AddImage(context.Background(), &ImageSource{ConfigRaw: cfgRaw, Layers: []LayerBlob{{Digest: sha(layer), Size: int64(len(layer)), Open: open}}}, nil)
	if !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("err = %v, want a size mismatch", err)
	}
	if junk.n > 1 {
		t.Errorf("%d bytes read past the blob's declared size, want at most 1", junk.n)
	}
}
