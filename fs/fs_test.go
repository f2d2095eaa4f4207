package fs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/internal/treecmp"
	"github.com/strata-dev/strata/layerstore"
)

var (
	bigContent  = strings.Repeat("busybox!", 256<<10)       // 2 MiB: passthrough-sized
	dataContent = strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
)

// baseImage is a two-layer image with what the tests poke at: a hard-link
// group across directories, a lower directory tree, xattrs, a file deleted
// by the second layer.
func baseImage(t *testing.T) *testImage {
	return newTestImage(t, func(b *layerBuilder) {
		b.dir("etc", 0o755).
			file("etc/passwd", 0o644, "root:x:0:0\n").
			file("etc/shadow", 0o000, "secret\n").
			add(&layerstore.Entry{Path: "etc/motd", Type: layerstore.TypeReg, Mode: 0o600, UID: 1000, GID: 1000,
				Xattrs: map[string]string{"user.origin": "layer0", "trusted.note": "t"}}).
			dir("bin", 0o755).
			file("bin/busybox", 0o4755, bigContent).
			link("bin/sh", "bin/busybox").
			dir("usr", 0o755).dir("usr/bin", 0o755).
			link("usr/bin/env", "bin/busybox").
			dir("usr/share", 0o755).dir("usr/share/doc", 0o755).
			file("usr/share/doc/a.txt", 0o644, "a\n").
			dir("usr/share/doc/sub", 0o750).
			file("usr/share/doc/sub/b.txt", 0o644, "b\n").
			symlink("usr/lib64", "lib").
			dir("data", 0o755).
			file("data/big", 0o644, dataContent).
			dir("tmp", 0o1777).
			add(&layerstore.Entry{Path: "dev", Type: layerstore.TypeDir, Mode: 0o755}).
			add(&layerstore.Entry{Path: "dev/null", Type: layerstore.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}).
			add(&layerstore.Entry{Path: "dev/fifo", Type: layerstore.TypeFifo, Mode: 0o644})
		// etc/motd above has no content: give it one.
		for _, e := range b.entries {
			if e.Path == "etc/motd" {
				e.Digest = writeTestObject(t, b.objects, nil)
			}
		}
	}, func(b *layerBuilder) {
		b.whiteout("etc/shadow").
			file("etc/hosts", 0o644, "127.0.0.1 localhost\n").
			file("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n")
	})
}

func TestFS_Reference(t *testing.T) {
	img := baseImage(t)
	for _, o := range []mountOpts{{}, {readOnly: true}, {passthrough: true}} {
		t.Run(fmt.Sprintf("ro=%v,passthrough=%v", o.readOnly, o.passthrough), func(t *testing.T) {
			m := mountImage(t, img, o)
			got, err := treecmp.Snapshot(m.dir, treecmp.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if d := treecmp.Compare(treecmp.FromLayerTree(img.tree), got, treecmp.Options{IgnoreRoot: o.readOnly}); len(d) > 0 {
				t.Errorf("mount differs from the tree:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func TestFS_CopyUp_Write(t *testing.T) {
	img := baseImage(t)
	before := objectsSnapshot(t, img.objects)
	m := mountImage(t, img, mountOpts{})
	st0 := mustLstat(t, m.p("etc/passwd"))
	f, err := os.OpenFile(m.p("etc/passwd"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("user:x:1000:1000\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000\n"
	if got := mustRead(t, m.p("etc/passwd")); got != want {
		t.Errorf("mount: %q, want %q", got, want)
	}
	// Appending copies no data: the upper file holds what was appended,
	// beyond the object's end.
	up := filepath.Join(m.upper, "etc/passwd")
	if d, err := MetacopyOf(up); err != nil || d == "" {
		t.Errorf("upper etc/passwd after an append: metacopy %q (%v), want the object's digest", d, err)
	}
	if got := readUpper(t, up, img); got != want {
		t.Errorf("upper through OpenUpperFile: %q, want %q", got, want)
	}
	// A write below the object's end copies the data.
	f, err = os.OpenFile(m.p("etc/passwd"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("R"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want = "R" + want[1:]
	if d, err := MetacopyOf(up); err != nil || d != "" {
		t.Errorf("upper etc/passwd after a write inside: metacopy %q (%v), want none", d, err)
	}
	if got := mustRead(t, up); got != want {
		t.Errorf("upper: %q, want %q", got, want)
	}
	if got := mustRead(t, m.p("etc/passwd")); got != want {
		t.Errorf("mount: %q, want %q", got, want)
	}
	st1 := mustLstat(t, m.p("etc/passwd"))
	if st1.Ino != st0.Ino {
		t.Errorf("inode changed by copy-up: %d -> %d", st0.Ino, st1.Ino)
	}
	// The directory copied up for it keeps its mtime.
	e, _ := img.tree.Lookup("etc")
	if st := mustLstat(t, m.p("etc")); st.Mtim.Nano() != e.Mtime {
		t.Errorf("etc mtime %d after copy-up, want %d", st.Mtim.Nano(), e.Mtime)
	}
	m.unmount(t)
	if after := objectsSnapshot(t, img.objects); !mapsEqual(before, after) {
		t.Errorf("objects changed")
	}
}

// readUpper reads an upper dir's file as the mount shows it.
func readUpper(t *testing.T, p string, img *testImage) string {
	t.Helper()
	r, _, err := OpenUpperFile(p, img.objectPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestFS_Metacopy checks that metadata changes of a lower file copy no data:
// the upper placeholder has no blocks, and its data comes from the object
// until the first open for writing.
func TestFS_Metacopy(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	big := m.p("data/big")
	if err := os.Chmod(big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(big, 7, 8); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(big, "user.x", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1_500_000_000, 5)
	if err := os.Chtimes(big, mt, mt); err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(m.upper, "data/big")
	ust := mustLstat(t, up)
	if hasData(t, up) {
		t.Errorf("placeholder has data extents (%d blocks): data was copied", ust.Blocks)
	}
	if ust.Size != int64(len(dataContent)) {
		t.Errorf("placeholder size %d, want %d", ust.Size, len(dataContent))
	}
	e, _ := img.tree.Lookup("data/big")
	if d, err := MetacopyOf(up); err != nil || d != e.Digest {
		t.Errorf("MetacopyOf = %q, %v; want %s", d, err, e.Digest)
	}
	st := mustLstat(t, big)
	if st.Mode&0o7777 != 0o600 || st.Uid != 7 || st.Gid != 8 || st.Mtim.Nano() != mt.UnixNano() || st.Ino != e.Ino {
		t.Errorf("mount shows mode %o owner %d:%d mtime %d ino %d", st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Nano(), st.Ino)
	}
	if st.Blocks == 0 {
		t.Errorf("mount shows 0 blocks for a 1 MiB file")
	}
	if got := mustRead(t, big); got != dataContent {
		t.Errorf("content through the mount differs (len %d)", len(got))
	}
	if names := listXattrs(t, big); !slices.Equal(names, []string{"user.x"}) {
		t.Errorf("xattrs %v, want [user.x]: strata's own are hidden", names)
	}
	// The first write copies the data.
	f, err := os.OpenFile(big, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("X"), 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := dataContent[:1] + "X" + dataContent[2:]
	if got := mustRead(t, up); got != want {
		t.Errorf("upper after write differs")
	}
	if d, _ := MetacopyOf(up); d != "" {
		t.Errorf("still a metacopy after a write")
	}
	if got := mustRead(t, big); got != want {
		t.Errorf("mount after write differs")
	}
}

// hasData reports whether the file at p has any data extent (xattr blocks
// count in st_blocks on ext4, so st_blocks does not tell).
func hasData(t *testing.T, p string) bool {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func listXattrs(t *testing.T, p string) []string {
	t.Helper()
	names, err := listxattr(p)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// TestFS_Whiteouts checks that deleting lower entries leaves nothing a user
// could see, and that a directory made again is empty.
func TestFS_Whiteouts(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	if err := os.Remove(m.p("etc/hosts")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(m.p("usr/share")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/hosts", "usr/share", "usr/share/doc/a.txt", "etc/shadow"} {
		if _, err := os.Lstat(m.p(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lstat %s after delete: %v", p, err)
		}
	}
	names := walkNames(t, m.dir)
	for _, n := range names {
		if strings.Contains(n, ".wh.") || strings.Contains(n, "hosts") || strings.Contains(n, "share") {
			t.Errorf("mount shows %q", n)
		}
	}
	// Made again: empty, though the lower directory had entries.
	if err := os.Mkdir(m.p("usr/share"), 0o700); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(m.p("usr/share")); err != nil || len(ents) != 0 {
		t.Errorf("usr/share made again shows %v (%v)", ents, err)
	}
	if _, err := os.Lstat(m.p("usr/share/doc")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("usr/share/doc shows through the new directory: %v", err)
	}
	if err := os.WriteFile(m.p("etc/hosts"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m.p("etc/hosts")); got != "new" {
		t.Errorf("etc/hosts made again: %q", got)
	}
	// The upper dir: an opaque directory.
	usr, err := openUpperRoot("test", filepath.Join(m.upper, "usr"))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(usr)
	if ents, err := readUpperDir(usr, "usr"); err != nil {
		t.Fatal(err)
	} else {
		for _, ue := range ents {
			if ue.name == "share" && !ue.opaque {
				t.Errorf("upper usr/share is not opaque")
			}
		}
	}
}

// TestFS_RenameLowerDir renames a lower directory holding a hard-link group
// member: it works (no EXDEV), copies no data, and keeps inode numbers.
func TestFS_RenameLowerDir(t *testing.T) {
	img := newTestImage(t, func(b *layerBuilder) {
		b.dir("a", 0o755).dir("a/b", 0o700).
			file("a/b/f", 0o644, dataContent).
			file("a/g", 0o600, "g").
			link("x", "a/b/f").
			symlink("a/l", "b/f")
	})
	m := mountImage(t, img, mountOpts{})
	inoF := mustLstat(t, m.p("a/b/f")).Ino
	inoB := mustLstat(t, m.p("a/b")).Ino
	if err := os.Rename(m.p("a"), m.p("z")); err != nil {
		t.Fatalf("rename a lower directory: %v", err)
	}
	if _, err := os.Lstat(m.p("a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a still there: %v", err)
	}
	if got := mustRead(t, m.p("z/b/f")); got != dataContent {
		t.Errorf("z/b/f content differs")
	}
	if got := mustRead(t, m.p("z/l")); got != dataContent {
		t.Errorf("z/l (symlink) content differs")
	}
	if st := mustLstat(t, m.p("z/b/f")); st.Ino != inoF || st.Nlink != 2 {
		t.Errorf("z/b/f ino %d nlink %d, want %d and 2", st.Ino, st.Nlink, inoF)
	}
	if st := mustLstat(t, m.p("z/b")); st.Ino != inoB || st.Mode&0o7777 != 0o700 {
		t.Errorf("z/b ino %d mode %o", st.Ino, st.Mode&0o7777)
	}
	if hasData(t, filepath.Join(m.upper, "z/b/f")) {
		t.Errorf("renaming copied data into upper z/b/f")
	}
	// Rename over a lower directory that shows empty, and back again.
	if err := os.Mkdir(m.p("a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.p("z/b"), m.p("a/b")); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m.p("a/b/f")); got != dataContent {
		t.Errorf("a/b/f after moving back differs")
	}
	if got := mustRead(t, m.p("x")); got != dataContent {
		t.Errorf("x differs")
	}
	if ents, _ := os.ReadDir(m.p("a")); len(ents) != 1 {
		t.Errorf("a shows %d entries, want 1 (b)", len(ents))
	}
}

// TestFS_HardLinks checks that a lower hard-link group stays one inode with
// a true link count through copy-up, links and unlinks.
func TestFS_HardLinks(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	names := []string{"bin/busybox", "bin/sh", "usr/bin/env"}
	ino := mustLstat(t, m.p(names[0])).Ino
	check := func(when string, names []string, nlink uint64) {
		t.Helper()
		for _, n := range names {
			st := mustLstat(t, m.p(n))
			if st.Ino != ino || st.Nlink != nlink {
				t.Errorf("%s: %s ino %d nlink %d, want %d and %d", when, n, st.Ino, st.Nlink, ino, nlink)
			}
		}
	}
	check("before copy-up", names, 3)
	if err := os.WriteFile(m.p("bin/sh"), []byte("#!new\n"), 0); err != nil {
		t.Fatal(err)
	}
	check("after writing one name", names, 3)
	for _, n := range names {
		if got := mustRead(t, m.p(n)); got != "#!new\n" {
			t.Errorf("%s: %q after writing bin/sh", n, got)
		}
	}
	if err := os.Link(m.p("usr/bin/env"), m.p("etc/env")); err != nil {
		t.Fatal(err)
	}
	check("after link", append(names, "etc/env"), 4)
	if err := os.Remove(m.p("bin/busybox")); err != nil {
		t.Fatal(err)
	}
	check("after unlink", []string{"bin/sh", "usr/bin/env", "etc/env"}, 3)
	// In the upper dir they are one inode too.
	a, b := mustLstat(t, filepath.Join(m.upper, "bin/sh")), mustLstat(t, filepath.Join(m.upper, "usr/bin/env"))
	if a.Ino != b.Ino || a.Nlink != 3 {
		t.Errorf("upper: bin/sh ino %d nlink %d, usr/bin/env ino %d", a.Ino, a.Nlink, b.Ino)
	}

	// Unlinking one name of an untouched group keeps the others' count true.
	img2 := baseImage(t)
	m2 := mountImage(t, img2, mountOpts{})
	if err := os.Remove(m2.p("bin/sh")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"bin/busybox", "usr/bin/env"} {
		if st := mustLstat(t, m2.p(n)); st.Nlink != 2 {
			t.Errorf("after unlinking bin/sh: %s nlink %d, want 2", n, st.Nlink)
		}
	}
	if got := mustRead(t, m2.p("usr/bin/env")); got != bigContent {
		t.Errorf("usr/bin/env content differs after unlinking bin/sh")
	}
}

// TestFS_Inodes checks inode numbers: the tree's for lower entries, new
// ones from NextIno up for new files, stable while the kernel forgets and
// looks them up again.
func TestFS_Inodes(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	if err := os.WriteFile(m.p("tmp/new"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(m.p("etc/passwd"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	_ = img.tree.Walk(func(e *layerstore.Entry) error {
		want[e.Path] = e.Ino
		return nil
	})
	newIno := mustLstat(t, m.p("tmp/new")).Ino
	if newIno < img.tree.NextIno {
		t.Errorf("new file has inode %d, below NextIno %d", newIno, img.tree.NextIno)
	}
	for round := 0; round < 2; round++ {
		for p, ino := range want {
			if st := mustLstat(t, m.p(p)); st.Ino != ino {
				t.Errorf("round %d: %s ino %d, want %d", round, p, st.Ino, ino)
			}
		}
		if st := mustLstat(t, m.p("tmp/new")); st.Ino != newIno {
			t.Errorf("round %d: tmp/new ino %d, want %d", round, st.Ino, newIno)
		}
		// Make the kernel forget what it can, then look everything up again.
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
			t.Logf("drop_caches: %v", err)
		}
	}
}

// TestFS_DiffAndWriteLayer applies changes, then checks Diff's report and
// that the layer WriteLayer makes, applied over the image's layers, gives
// what the mount shows.
func TestFS_DiffAndWriteLayer(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	steps := []func() error{
		func() error { return os.WriteFile(m.p("etc/passwd"), []byte("changed\n"), 0) },
		func() error { return os.Remove(m.p("etc/hosts")) },
		func() error { return os.Chmod(m.p("data/big"), 0o640) },
		func() error { return os.Rename(m.p("usr/share/doc"), m.p("doc2")) },
		func() error { return os.Mkdir(m.p("new"), 0o750) },
		func() error { return os.WriteFile(m.p("new/f"), []byte("f"), 0o644) },
		func() error { return os.Link(m.p("new/f"), m.p("new/g")) },
		func() error { return os.Symlink("../etc", m.p("new/l")) },
		func() error { return unix.Mkfifo(m.p("new/p"), 0o600) },
		func() error { return unix.Mknod(m.p("new/c"), unix.S_IFCHR|0o600, int(unix.Mkdev(5, 1))) },
		func() error { return unix.Lsetxattr(m.p("etc/motd"), "user.y", []byte("2"), 0) },
		func() error { return os.RemoveAll(m.p("usr/bin")) },
		func() error { return os.Mkdir(m.p("usr/bin"), 0o755) },
		func() error { return os.WriteFile(m.p("usr/bin/tool"), []byte("t"), 0o755) },
		func() error { return os.Remove(m.p("bin/sh")) },
		func() error { return os.WriteFile(m.p("tmp/sparse"), nil, 0o644) },
		func() error { return os.Truncate(m.p("tmp/sparse"), 1<<20) },
		func() error { // an append keeps the data in the object
			f, err := os.OpenFile(m.p("doc2/a.txt"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteString("appended\n")
			return errors.Join(err, f.Close())
		},
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	changes, err := Diff(m.upper, img.tree)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	// bin/busybox is still there, copied up with its group but unchanged:
	// as in docker diff, only its directory is listed.
	want := []string{
		"C /bin", "D /bin/sh",
		"C /data/big",
		"A /doc2", "A /doc2/a.txt", "A /doc2/sub", "A /doc2/sub/b.txt",
		"C /etc", "D /etc/hosts", "C /etc/motd", "C /etc/passwd",
		"A /new", "A /new/c", "A /new/f", "A /new/g", "A /new/l", "A /new/p",
		"C /tmp", "A /tmp/sparse",
		"C /usr/bin", "D /usr/bin/env", "A /usr/bin/tool",
		"C /usr/share", "D /usr/share/doc",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Diff:\n got %v\nwant %v", got, want)
	}

	var layer bytes.Buffer
	if err := WriteLayer(&layer, m.upper, img.tree, img.objectPath); err != nil {
		t.Fatal(err)
	}
	entries := layerFromTar(t, layer.Bytes())
	applied, err := layerstore.BuildTree("", append(slices.Clone(img.layers), entries)...)
	if err != nil {
		t.Fatal(err)
	}
	live, err := treecmp.Snapshot(m.dir, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opt := treecmp.Options{IgnoreInodes: true, IgnoreRoot: true}
	if d := treecmp.Compare(treecmp.FromLayerTree(applied), live, opt); len(d) > 0 {
		t.Errorf("image + WriteLayer's layer differs from the mount:\n%s", strings.Join(d, "\n"))
	}
	// Diff and WriteLayer work after the mount is gone too.
	m.unmount(t)
	again, err := Diff(m.upper, img.tree)
	if err != nil || len(again) != len(changes) {
		t.Errorf("Diff after unmount: %d changes (%v), want %d", len(again), err, len(changes))
	}
}

// TestFS_ObjectsNeverChange runs random sequences of opens, writes,
// truncations, mmaps, renames and links on lower files, with read-only
// handles held open, and checks that no object changed in any way.
func TestFS_ObjectsNeverChange(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 0))
			img := baseImage(t)
			before := objectsSnapshot(t, img.objects)
			m := mountImage(t, img, mountOpts{passthrough: pt})
			files := []string{"etc/passwd", "etc/motd", "bin/busybox", "bin/sh", "usr/bin/env", "data/big", "usr/share/doc/a.txt", "etc/hosts"}
			var held []*os.File
			mmaps := 0
			defer func() {
				for _, f := range held {
					f.Close()
				}
			}()
			// The sequence that writes into the lower file of a union whose
			// inodes share one backing file: read-only open (passthrough for
			// a large file), then open for writing and write.
			for _, f := range []string{"bin/busybox", "data/big", "etc/passwd"} {
				ro, err := os.Open(m.p(f))
				if err != nil {
					t.Fatal(err)
				}
				io.CopyN(io.Discard, ro, 10)
				if rw, err := os.OpenFile(m.p(f), os.O_RDWR, 0); err == nil {
					rw.WriteAt([]byte("OVERWRITE"), 0)
					rw.Close()
				}
				if rw, err := os.OpenFile(m.p(f), os.O_WRONLY|os.O_TRUNC, 0); err == nil {
					rw.Close()
				}
				held = append(held, ro)
			}
			for i := 0; i < 300; i++ {
				p := m.p(files[rng.IntN(len(files))])
				switch rng.IntN(9) {
				case 0: // hold a read-only handle open, read through it
					if f, err := os.Open(p); err == nil {
						io.CopyN(io.Discard, f, 4096)
						held = append(held, f)
					}
				case 1:
					if f, err := os.OpenFile(p, os.O_RDWR, 0); err == nil {
						f.WriteAt([]byte("W"), int64(rng.IntN(100)))
						f.Close()
					}
				case 2:
					if f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0); err == nil {
						f.WriteString("append")
						f.Close()
					}
				case 3:
					os.Truncate(p, int64(rng.IntN(10)))
				case 4:
					if f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
						f.Close()
					}
				case 5:
					if mmaps < 3 { // each costs a child process
						mmaps++
						_ = mmapWrite(p)
					}
				case 6:
					os.Chmod(p, 0o600)
				case 7:
					os.Link(p, p+".l")
				case 8:
					if f, err := os.OpenFile(p, os.O_RDWR, 0); err == nil {
						unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
						f.Close()
					}
				}
				if i%50 == 0 {
					for _, f := range held {
						f.Close()
					}
					held = held[:0]
				}
			}
			for _, f := range held {
				f.Close()
			}
			held = nil
			m.unmount(t)
			after := objectsSnapshot(t, img.objects)
			for k, v := range before {
				if after[k] != v {
					t.Errorf("object %s changed:\n before %s\n after  %s", k, v, after[k])
				}
			}
		})
	}
}

// TestFS_MissingObject checks that a missing or short object fails the read
// with EIO and logs the digest, and that the rest of the mount works.
func TestFS_MissingObject(t *testing.T) {
	img := baseImage(t)
	pw, _ := img.tree.Lookup("etc/passwd")
	big, _ := img.tree.Lookup("data/big")
	if err := os.Remove(img.objectPath(pw.Digest)); err != nil {
		t.Fatal(err)
	}
	// A short object: same name, fewer bytes.
	bp := img.objectPath(big.Digest)
	os.Chmod(bp, 0o644)
	if err := os.Truncate(bp, 100); err != nil {
		t.Fatal(err)
	}
	m := mountImage(t, img, mountOpts{})
	for _, tc := range []struct {
		p string
		d string
	}{{"etc/passwd", pw.Digest.String()}, {"data/big", big.Digest.String()}} {
		_, err := os.ReadFile(m.p(tc.p))
		if !errors.Is(err, unix.EIO) {
			t.Errorf("read %s: %v, want EIO", tc.p, err)
		}
		if err := os.WriteFile(m.p(tc.p), []byte("x"), 0); err == nil {
			// O_TRUNC needs no data: allowed.
		}
		if !strings.Contains(m.logs.String(), tc.d) {
			t.Errorf("log does not name %s:\n%s", tc.d, m.logs.String())
		}
	}
	f, err := os.OpenFile(m.p("data/big"), os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	if got := mustRead(t, m.p("etc/hosts")); got != "127.0.0.1 localhost\n" {
		t.Errorf("etc/hosts: %q", got)
	}
}

// TestFS_PassthroughReadOnly checks passthrough on a read-only mount: the
// kernel reads large lower files from their objects (no READ reaches the
// server), small ones through the server.
func TestFS_PassthroughReadOnly(t *testing.T) {
	img := baseImage(t)
	m := mountTraced(t, img, mountOpts{readOnly: true, passthrough: true})
	if !m.srv.Passthrough() {
		t.Skipf("no passthrough here: %s", m.logs.String())
	}
	m.srv.Trace(true)
	if got := mustRead(t, m.p("bin/busybox")); got != bigContent {
		t.Fatalf("bin/busybox through passthrough: %d bytes, want %d", len(got), len(bigContent))
	}
	if n := traceOf(m, "READ"); n != 0 {
		t.Errorf("reading a 2 MiB lower file sent %d READs, want 0 (passthrough)", n)
	}
	if got := mustRead(t, m.p("etc/hosts")); got != "127.0.0.1 localhost\n" {
		t.Errorf("etc/hosts: %q", got)
	}
	if n := traceOf(m, "READ"); n == 0 {
		t.Error("a small lower file was read with no READ: the trace does not count reads")
	}
}

// TestFS_UpperPassthrough checks passthrough on a writable mount: a file of
// the top layer with data of its own is read and written by the kernel
// straight from the upper file; a metacopy, a setuid file and any file with
// an open through the page cache go through the server; and a writer never
// meets ETXTBSY, whoever holds the file open.
func TestFS_UpperPassthrough(t *testing.T) {
	img := baseImage(t)
	m := mountTraced(t, img, mountOpts{passthrough: true})
	if !m.srv.Passthrough() {
		t.Skipf("no passthrough here: %s", m.logs.String())
	}
	data := bytes.Repeat([]byte("strata passthrough\n"), 1<<16)
	m.srv.Trace(true)
	if err := os.WriteFile(m.p("tmp/new"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m.p("tmp/new")); got != string(data) {
		t.Fatalf("tmp/new read back: %d bytes, want %d", len(got), len(data))
	}
	if r, w := traceOf(m, "READ"), traceOf(m, "WRITE"); r != 0 || w != 0 {
		t.Errorf("a new file written and read back sent %d READs and %d WRITEs, want none (passthrough)", r, w)
	}
	if b, err := os.ReadFile(filepath.Join(m.upper, "tmp/new")); err != nil || !bytes.Equal(b, data) {
		t.Errorf("upper file: %d bytes, %v; want the data written", len(b), err)
	}

	// A large lower file held open read-only (through the page cache: no
	// lower passthrough on a writable mount) does not keep writers out,
	// and sees what they write.
	ro, err := os.Open(m.p("data/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	buf := make([]byte, 8)
	if _, err := ro.ReadAt(buf, 0); err != nil || string(buf) != dataContent[:8] {
		t.Fatalf("read: %q %v", buf, err)
	}
	rw, err := os.OpenFile(m.p("data/big"), os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("write open while a reader holds the file: %v", err)
	}
	if _, err := rw.WriteAt([]byte("WRITTEN!"), 0); err != nil {
		t.Fatal(err)
	}
	// The file has data of its own now, but a cached open is in place:
	// a second open must be cached too (the kernel says EIO otherwise).
	rw2, err := os.OpenFile(m.p("data/big"), os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("second open beside cached opens: %v", err)
	}
	if _, err := rw2.ReadAt(buf, 0); err != nil || string(buf) != "WRITTEN!" {
		t.Errorf("second handle reads %q %v, want WRITTEN!", buf, err)
	}
	if _, err := ro.ReadAt(buf, 0); err != nil || string(buf) != "WRITTEN!" {
		t.Errorf("the reader opened before the write reads %q %v, want WRITTEN!", buf, err)
	}
	for _, f := range []*os.File{rw, rw2, ro} {
		f.Close()
	}
	// Once every cached open is released, a new open passes through. The
	// kernel sends RELEASE on its own time: wait for the server to count
	// it (the server then answers passthrough).
	waitNoOpens(t, m, "data/big")
	m.srv.Trace(true)
	f, err := os.OpenFile(m.p("data/big"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("AGAIN"), 100); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(buf[:5], 100); err != nil || string(buf[:5]) != "AGAIN" {
		t.Errorf("read after write: %q %v", buf[:5], err)
	}
	f.Close()
	if r, w := traceOf(m, "READ"), traceOf(m, "WRITE"); r != 0 || w != 0 {
		t.Errorf("an upper file with data, opened alone, sent %d READs and %d WRITEs, want none", r, w)
	}
	if got := mustRead(t, m.p("data/big")); got[:8] != "WRITTEN!" || got[100:105] != "AGAIN" || len(got) != len(dataContent) {
		t.Errorf("data/big reads %q...%q, %d bytes", got[:8], got[100:105], len(got))
	}
	// A file made setuid while open with passthrough stays in passthrough
	// until released: an open beside it must not be refused (EIO).
	if err := os.WriteFile(m.p("tmp/prog"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitNoOpens(t, m, "tmp/prog")
	held, err := os.OpenFile(m.p("tmp/prog"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(m.p("tmp/prog"), os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(m.p("tmp/prog")); err != nil || string(got) != "#!/bin/sh\n" {
		t.Errorf("open beside a passthrough handle of a file made setuid since: %q, %v", got, err)
	}
	held.Close()
	// A setuid file, whose bit a write must clear, never passes through
	// (the server clears the bit at a WRITE it would not see).
	m.srv.Trace(true)
	if err := os.WriteFile(m.p("bin/busybox"), []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if w := traceOf(m, "WRITE"); w == 0 {
		t.Error("a write to a setuid file passed through")
	}
}

// waitNoOpens waits until the server counts no open of the node at rel.
func waitNoOpens(t *testing.T, m *testMount, rel string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m.srv.u.io.opens() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the server still counts open handles after 10 s", rel)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFS_ReadOnly(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{readOnly: true})
	for _, err := range []error{
		os.WriteFile(m.p("etc/new"), nil, 0o644),
		os.Chmod(m.p("etc/passwd"), 0),
		os.Remove(m.p("etc/passwd")),
		os.Mkdir(m.p("x"), 0o755),
	} {
		if !errors.Is(err, unix.EROFS) {
			t.Errorf("change on a read-only mount: %v, want EROFS", err)
		}
	}
}

// TestFS_Concurrent has many goroutines read, write, create, rename and
// delete at once (run with -race).
func TestFS_Concurrent(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{passthrough: true})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := m.p(fmt.Sprintf("tmp/g%d", g))
			if err := os.Mkdir(dir, 0o755); err != nil {
				errs <- err
				return
			}
			for i := 0; i < 50; i++ {
				f := filepath.Join(dir, fmt.Sprint(i))
				if err := os.WriteFile(f, []byte(strings.Repeat("x", i)), 0o644); err != nil {
					errs <- err
					return
				}
				if b, err := os.ReadFile(f); err != nil || len(b) != i {
					errs <- fmt.Errorf("read %s: %d bytes, %v", f, len(b), err)
					return
				}
				if i%3 == 0 {
					if err := os.Rename(f, f+".r"); err != nil {
						errs <- err
						return
					}
				}
				if _, err := os.ReadFile(m.p("usr/share/doc/a.txt")); err != nil {
					errs <- err
					return
				}
				if _, err := os.ReadDir(m.p("etc")); err != nil {
					errs <- err
					return
				}
			}
			if err := os.RemoveAll(dir); err != nil {
				errs <- err
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			if err := os.WriteFile(m.p("etc/passwd"), []byte(fmt.Sprint(i)), 0); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ents, err := os.ReadDir(m.p("tmp")); err != nil || len(ents) != 0 {
		t.Errorf("tmp: %v %v", ents, err)
	}
}

// TestFS_Tmpfile makes an O_TMPFILE file and links it into place.
func TestFS_Tmpfile(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	fd, err := unix.Open(m.p("etc"), unix.O_TMPFILE|unix.O_RDWR, 0o640)
	if errors.Is(err, unix.EOPNOTSUPP) {
		t.Skip("O_TMPFILE not supported")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte("tmp")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, m.p("etc/tmpfile"), unix.AT_SYMLINK_FOLLOW); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m.p("etc/tmpfile")); got != "tmp" {
		t.Errorf("etc/tmpfile: %q", got)
	}
}

// TestFS_Xattrs checks reserved names stay hidden and refused.
func TestFS_Xattrs(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	p := m.p("etc/motd")
	if names := listXattrs(t, p); !slices.Equal(names, []string{"trusted.note", "user.origin"}) {
		t.Errorf("lower xattrs %v", names)
	}
	if err := unix.Lsetxattr(p, XattrPrefix+"whiteout", []byte("y"), 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("setting a reserved xattr: %v, want EPERM", err)
	}
	if err := unix.Lremovexattr(p, "user.origin"); err != nil {
		t.Fatal(err)
	}
	if _, err := getxattr(p, "user.origin"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("removed user.origin: %v, want ENODATA", err)
	}
	// An image without labels: a mount without label support (xattr_test.go).
	if _, err := getxattr(p, "security.selinux"); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("absent security.selinux: %v, want EOPNOTSUPP", err)
	}
	if names := listXattrs(t, p); !slices.Equal(names, []string{"trusted.note"}) {
		t.Errorf("xattrs after remove %v", names)
	}
}

// TestDirHandle_SeekOnNewHandle: the kernel continues a directory listing it
// cached in part on a new handle, at the offset where its cache ends.
func TestDirHandle_SeekOnNewHandle(t *testing.T) {
	img := baseImage(t)
	u := newUnion(img.tree, &Options{ReadOnly: true, Objects: img.objectPath}, discardLogger())
	root, _ := img.tree.Lookup("")
	n := &node{u: u, ino: root.Ino, lower: root.Ref()}
	u.root = n
	d := &dirHandle{n: n}
	if errno := d.Seekdir(context.Background(), 3); errno != 0 {
		t.Fatalf("Seekdir(3) on a new handle: %v", errno)
	}
	e, errno := d.Readdirent(context.Background())
	if errno != 0 || e == nil || e.Off != 4 {
		t.Fatalf("Readdirent after Seekdir(3): %+v %v", e, errno)
	}
	if errno := d.Seekdir(context.Background(), 1000); errno != syscall.EINVAL {
		t.Errorf("Seekdir past the end: %v, want EINVAL", errno)
	}
}

// TestFS_MountFlags checks that a mount is nosuid,nodev unless Options.Suid
// and Options.Dev say otherwise, and that each flag does what it says.
func TestFS_MountFlags(t *testing.T) {
	img := baseImage(t)
	for _, tc := range []struct {
		name      string
		suid, dev bool
	}{
		{"default", false, false},
		{"suid", true, false},
		{"dev", false, true},
		{"suid-dev", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir, upper := filepath.Join(base, "mnt"), filepath.Join(base, "upper")
			os.Mkdir(dir, 0o755)
			os.Mkdir(upper, 0o700)
			srv, err := Mount(dir, img.tree, &Options{Upper: upper, Objects: img.objectPath, Suid: tc.suid, Dev: tc.dev})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := srv.Unmount(); err != nil {
					t.Error(err)
				}
			}()
			opts := mountOptionsOf(t, dir)
			if got := slices.Contains(opts, "nosuid"); got == tc.suid {
				t.Errorf("mount options %v: nosuid %v, want %v", opts, got, !tc.suid)
			}
			if got := slices.Contains(opts, "nodev"); got == tc.dev {
				t.Errorf("mount options %v: nodev %v, want %v", opts, got, !tc.dev)
			}
			err = os.WriteFile(filepath.Join(dir, "dev/null"), []byte("x"), 0)
			if tc.dev && err != nil {
				t.Errorf("write to the image's /dev/null with Dev: %v", err)
			}
			if !tc.dev && !errors.Is(err, unix.EACCES) {
				t.Errorf("open a device on a nodev mount: %v, want EACCES", err)
			}
			// The bit stays visible either way; nosuid only stops exec from honouring it.
			if st := mustLstat(t, filepath.Join(dir, "bin/busybox")); st.Mode&unix.S_ISUID == 0 {
				t.Errorf("setuid bit lost: mode %o", st.Mode)
			}
		})
	}
}

// mountOptionsOf returns the per-mount options of the mount at dir.
func mountOptionsOf(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && f[4] == dir {
			return strings.Split(f[5], ",")
		}
	}
	t.Fatalf("%s not in mountinfo", dir)
	return nil
}

// TestFS_AppendCopiesNoData appends to a large lower file: the data stays in
// the object, reads, seeks and the layer see object and tail as one file.
func TestFS_AppendCopiesNoData(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	p := m.p("data/big")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("tail"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := dataContent + "tail"
	if got := mustRead(t, p); got != want {
		t.Errorf("content after append differs (len %d, want %d)", len(got), len(want))
	}
	up := filepath.Join(m.upper, "data/big")
	fd, err := unix.Open(up, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := unix.Seek(fd, 0, unix.SEEK_DATA)
	unix.Close(fd)
	if err != nil || d < int64(len(dataContent))/4096*4096 {
		t.Errorf("upper file has data at %d (%v): the append copied the object's data", d, err)
	}
	if got := readUpper(t, up, img); got != want {
		t.Errorf("OpenUpperFile differs")
	}
	// SEEK_HOLE through the mount: no hole before the end.
	mf, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	if h, err := unix.Seek(int(mf.Fd()), 0, unix.SEEK_HOLE); err != nil || h != int64(len(want)) {
		t.Errorf("SEEK_HOLE = %d, %v; want %d", h, err, len(want))
	}
	// Reading across the object's end, from a read-write handle too.
	rw, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	buf := make([]byte, 8)
	if _, err := rw.ReadAt(buf, int64(len(dataContent))-4); err != nil || string(buf) != dataContent[len(dataContent)-4:]+"tail" {
		t.Errorf("read across the object's end: %q %v", buf, err)
	}
}

// TestFS_Diff_HardLinkGroup deletes one name of a 23-name hard-link group
// (the first change to any name copies the whole group up): Diff lists the
// deleted name and its directory only, as docker diff does, and WriteLayer
// writes no file, only the whiteout. Linking a new name to the group then
// makes it new: the layer carries every remaining name, still one inode.
func TestFS_Diff_HardLinkGroup(t *testing.T) {
	img := newTestImage(t, func(b *layerBuilder) {
		b.dir("g", 0o755).dir("h", 0o755).file("g/n00", 0o644, "group\n")
		for i := 1; i < 23; i++ {
			dir := "g"
			if i%5 == 0 {
				dir = "h"
			}
			b.link(fmt.Sprintf("%s/n%02d", dir, i), "g/n00")
		}
	})
	m := mountImage(t, img, mountOpts{})
	if err := os.Remove(m.p("g/n07")); err != nil {
		t.Fatal(err)
	}
	if st := mustLstat(t, m.p("h/n05")); st.Nlink != 22 {
		t.Fatalf("h/n05 nlink %d after the unlink, want 22", st.Nlink)
	}
	diff := func() []string {
		t.Helper()
		changes, err := Diff(m.upper, img.tree)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range changes {
			got = append(got, c.String())
		}
		return got
	}
	if got, want := diff(), []string{"C /g", "D /g/n07"}; !slices.Equal(got, want) {
		t.Errorf("Diff after deleting one name: %v, want %v", got, want)
	}
	layerOf := func() ([]*layerstore.Entry, map[string]byte) {
		t.Helper()
		var layer bytes.Buffer
		if err := WriteLayer(&layer, m.upper, img.tree, img.objectPath); err != nil {
			t.Fatal(err)
		}
		kinds := map[string]byte{}
		tr := tar.NewReader(bytes.NewReader(layer.Bytes()))
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			kinds[h.Name] = h.Typeflag
		}
		return layerFromTar(t, layer.Bytes()), kinds
	}
	check := func(what string, entries []*layerstore.Entry) {
		t.Helper()
		applied, err := layerstore.BuildTree("", append(slices.Clone(img.layers), entries)...)
		if err != nil {
			t.Fatal(err)
		}
		live, err := treecmp.Snapshot(m.dir, treecmp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		opt := treecmp.Options{IgnoreInodes: true, IgnoreRoot: true}
		if d := treecmp.Compare(treecmp.FromLayerTree(applied), live, opt); len(d) > 0 {
			t.Errorf("%s: image + WriteLayer's layer differs from the mount:\n%s", what, strings.Join(d, "\n"))
		}
	}
	entries, kinds := layerOf()
	for name, k := range kinds {
		if k != tar.TypeDir && name != "g/.wh.n07" {
			t.Errorf("layer after deleting one name has %s (type %q): only the whiteout and directories belong there", name, k)
		}
	}
	if _, ok := kinds["g/.wh.n07"]; !ok {
		t.Errorf("layer has no whiteout for g/n07: %v", kinds)
	}
	check("after deleting one name", entries)

	if err := os.Link(m.p("h/n10"), m.p("new")); err != nil {
		t.Fatal(err)
	}
	if got, want := diff(), []string{"C /g", "D /g/n07", "A /new"}; !slices.Equal(got, want) {
		t.Errorf("Diff after linking a new name: %v, want %v", got, want)
	}
	entries, kinds = layerOf()
	files, links := 0, 0
	for _, k := range kinds {
		switch k {
		case tar.TypeReg:
			files++
		case tar.TypeLink:
			links++
		}
	}
	if files != 2 || links != 22 { // the whiteout, the file, 22 links to it
		t.Errorf("layer after linking a new name: %d files and %d hard links, want the whiteout, one file and 22 links: %v", files, links, kinds)
	}
	check("after linking a new name", entries)
}
