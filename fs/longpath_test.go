package fs

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// longName is a name of n bytes made of c.
func longName(c byte, n int) string { return strings.Repeat(string(c), n) }

// deepChain is k directory names of 255 bytes joined by "/".
func deepChain(k int) string {
	names := make([]string, k)
	for i := range names {
		names[i] = fmt.Sprintf("%02d", i) + longName('d', nameMax-2)
	}
	return strings.Join(names, "/")
}

// pathOps runs pjdfstest's PATH_MAX and NAME_MAX cases in directory base,
// with the working directory there and paths relative to it, as pjdfstest
// does: every operation on a path of 4,095 bytes (15 directories of 255
// bytes and a name of 255), rename and symlink with such a destination, the
// same with 4,096 bytes, and names of 255 and 256 bytes. It returns what
// each step gave: its errno and what the path shows after.
func pathOps(t *testing.T, base string) []string {
	t.Chdir(base)
	chain := deepChain(15)
	if err := os.MkdirAll(chain, 0o755); err != nil {
		t.Fatalf("mkdir -p the chain in %s: %v", base, err)
	}
	p := func(c byte) string { return chain + "/" + longName(c, nameMax) } // 4,095 bytes
	if len(p('a')) != unix.PathMax-1 {
		t.Fatalf("path of %d bytes", len(p('a')))
	}
	p4096 := chain + "/" + longName('z', nameMax+1)
	n255, n256 := longName('n', nameMax), longName('m', nameMax+1)
	target := longName('t', unix.PathMax-1) // a symlink target as long as a path

	var out []string
	errno := func(err error) string {
		var e unix.Errno
		if errors.As(err, &e) {
			return e.Error()
		}
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	show := func(q string) string {
		var st unix.Stat_t
		if err := unix.Lstat(q, &st); err != nil {
			return errno(err)
		}
		size := st.Size
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			size = 0 // the file system's business
		}
		s := fmt.Sprintf("mode %o owner %d:%d size %d nlink %d rdev %x", st.Mode, st.Uid, st.Gid, size, st.Nlink, st.Rdev)
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			buf := make([]byte, unix.PathMax)
			n, err := unix.Readlink(q, buf)
			if n == len(target) && string(buf[:n]) == target {
				s += " -> the long target"
			} else {
				s += fmt.Sprintf(" -> %q (%s)", buf[:max(n, 0)], errno(err))
			}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b, err := os.ReadFile(q)
			s += fmt.Sprintf(" content %q (%s)", b, errno(err))
		}
		return s
	}
	step := func(name string, err error, after ...string) {
		s := name + ": " + errno(err)
		for _, q := range after {
			s += "; " + show(q)
		}
		out = append(out, s)
	}
	create := func(q string) error {
		fd, err := unix.Open(q, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
		if err == nil {
			err = unix.Close(fd)
		}
		return err
	}
	write := func(q, s string) error {
		fd, err := unix.Open(q, unix.O_WRONLY|unix.O_TRUNC, 0)
		if err != nil {
			return err
		}
		_, err = unix.Write(fd, []byte(s))
		return errors.Join(err, unix.Close(fd))
	}

	a, b, c := p('a'), p('b'), p('c')
	step("create 4095", create(a), a)
	step("open 4095", write(a, "hello"), a)
	step("chmod 4095", unix.Chmod(a, 0o600), a)
	step("chown 4095", unix.Lchown(a, 65534, 65533), a)
	step("truncate 4095", unix.Truncate(a, 3), a)
	step("link 4095 to 4095", unix.Link(a, b), a, b)
	step("unlink 4095", unix.Unlink(b), a, b)
	step("rename 4095 to 4095", unix.Rename(a, c), a, c)
	step("rename short to 4095", errors.Join(create(n255), unix.Rename(n255, a)), n255, a)
	step("unlink renamed", errors.Join(unix.Unlink(a), unix.Unlink(c)), a, c)
	step("mkdir 4095", unix.Mkdir(a, 0o750), a)
	step("rmdir 4095", unix.Rmdir(a), a)
	step("mkfifo 4095", unix.Mkfifo(a, 0o640), a)
	step("unlink fifo", unix.Unlink(a), a)
	step("mknod 4095", unix.Mknod(a, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))), a)
	step("unlink mknod", unix.Unlink(a), a)
	step("symlink to 4095", unix.Symlink("x", a), a)
	step("unlink symlink", unix.Unlink(a), a)
	step("symlink with a 4095-byte target", unix.Symlink(target, a), a)
	step("unlink symlink", unix.Unlink(a), a)

	step("create 4096", create(p4096), p4096)
	step("mkdir 4096", unix.Mkdir(p4096, 0o755), p4096)
	step("mkfifo 4096", unix.Mkfifo(p4096, 0o644), p4096)
	step("symlink to 4096", unix.Symlink("x", p4096), p4096)
	step("symlink with a 4096-byte target", unix.Symlink(target+"t", b), b)

	step("create 255", create(n255), n255)
	step("chmod 255", unix.Chmod(n255, 0o640), n255)
	step("link 255 to 256", unix.Link(n255, n256), n255, n256)
	step("rename 255 to 256", unix.Rename(n255, n256), n255, n256)
	step("unlink 255", unix.Unlink(n255), n255)
	step("create 256", create(n256), n256)
	step("mkdir 255", unix.Mkdir(n255, 0o755), n255)
	step("rmdir 255", unix.Rmdir(n255), n255)
	step("mkdir 256", unix.Mkdir(n256, 0o755), n256)
	step("symlink to 256", unix.Symlink("x", n256), n256)
	step("mknod 256", unix.Mknod(n256, unix.S_IFIFO|0o600, 0), n256)
	return out
}

// TestFS_LongPaths compares every pjdfstest PATH_MAX and NAME_MAX case in a
// mount (starting in a lower directory, so the chain is made under a
// copied-up directory and the server's paths are longer than PATH_MAX) with
// the same steps in a plain directory: same results, same errnos.
func TestFS_LongPaths(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	want := pathOps(t, t.TempDir())
	got := pathOps(t, m.p("usr/share"))
	for i, w := range want {
		if !strings.Contains(w, ": ok") && !strings.Contains(w, "4096") && !strings.Contains(w, "256") {
			t.Errorf("plain directory: %s (the case is meant to succeed)", shorten([]string{w})[0])
		}
		if i < len(got) && got[i] != w {
			t.Errorf("mount and plain directory differ:\n mount %s\n plain %s", shorten([]string{got[i]})[0], shorten([]string{w})[0])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d steps in the mount, %d in the plain directory", len(got), len(want))
	}
	t.Chdir("/") // out of the mount before it is unmounted

	// Diff and WriteLayer read the upper dir by descriptor too.
	changes, err := Diff(m.upper, img.tree)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	deep := "usr/share/" + deepChain(15)
	var names []string
	for _, c := range changes {
		names = append(names, c.String())
	}
	if !slices.Contains(names, "A /"+deep) || !slices.Contains(names, "A /usr/share/"+deepChain(1)) {
		t.Errorf("Diff misses the deep chain: %d changes", len(changes))
	}
	var layer bytes.Buffer
	if err := WriteLayer(&layer, m.upper, img.tree, img.objectPath); err != nil {
		t.Fatalf("WriteLayer: %v", err)
	}
	if !tarHas(t, layer.Bytes(), deep+"/") {
		t.Errorf("WriteLayer's layer misses %s", deep)
	}
}

// shorten abbreviates the long names of paths for messages.
func shorten(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		for _, c := range []byte{'d', 'r', 'n', 'm', 'a', 'b', 'c'} {
			p = strings.ReplaceAll(p, longName(c, 40), string(c)+"…")
		}
		out[i] = p
	}
	return out
}

func tarHas(t *testing.T, b []byte, name string) bool {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			return true
		}
	}
}

// TestFS_LongPaths_CopyUp changes a lower file whose path in the mount is
// longer than PATH_MAX (17 directories of 255 bytes), working from a
// directory of the chain as pjdfstest would: reads, an append (metacopy), a
// write inside (data copy-up), chmod, an xattr, a rename, and unlinking the
// other name of its hard-link group, which copies the group up.
func TestFS_LongPaths_CopyUp(t *testing.T) {
	chain := deepChain(17)
	img := newTestImage(t, func(b *layerBuilder) {
		b.dir("deep", 0o755)
		q := "deep"
		for name := range strings.SplitSeq(chain, "/") {
			q += "/" + name
			b.dir(q, 0o755)
		}
		b.file(q+"/file", 0o644, "lower\n").link("deep/alias", q+"/file")
	})
	m := mountImage(t, img, mountOpts{})
	names := strings.Split(chain, "/")
	t.Chdir(m.p("deep/" + names[0] + "/" + names[1]))
	rel := strings.Join(names[2:], "/") + "/file"
	if len(rel) >= unix.PathMax {
		t.Fatalf("relative path of %d bytes", len(rel))
	}
	full := "deep/" + chain + "/file"
	if len(full) < unix.PathMax {
		t.Fatalf("the merged path is only %d bytes", len(full))
	}

	check := func(what, want string) {
		t.Helper()
		b, err := os.ReadFile(rel)
		if err != nil || string(b) != want {
			t.Errorf("%s: read %q (%v), want %q", what, b, err, want)
		}
	}
	check("lower", "lower\n")
	f, err := os.OpenFile(rel, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("more\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	check("after an append", "lower\nmore\n")
	f, err = os.OpenFile(rel, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("L"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	check("after a write inside", "Lower\nmore\n")
	if err := os.Chmod(rel, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(rel, "user.deep", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.p("deep/alias")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(rel, &st); err != nil || st.Nlink != 1 || st.Mode&0o7777 != 0o600 {
		t.Errorf("after unlinking the other name: nlink %d mode %o (%v), want 1 and 600", st.Nlink, st.Mode&0o7777, err)
	}
	moved := filepath.Dir(rel) + "/" + longName('r', nameMax)
	if err := os.Rename(rel, moved); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(moved)
	if err != nil || string(b) != "Lower\nmore\n" {
		t.Errorf("renamed: %q (%v)", b, err)
	}
	if v, err := unix.Lgetxattr(moved, "user.deep", make([]byte, 8)); err != nil || v != 1 {
		t.Errorf("xattr after rename: %d bytes (%v)", v, err)
	}
	t.Chdir("/")

	changes, err := Diff(m.upper, img.tree)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	dir := "deep/" + chain
	wantChanges := []string{"C /deep", "C /" + dir, "D /" + dir + "/file", "A /" + dir + "/" + longName('r', nameMax), "D /deep/alias"}
	if !slices.Equal(got, wantChanges) {
		t.Errorf("Diff:\n got %q\nwant %q", shorten(got), shorten(wantChanges))
	}
	var layer bytes.Buffer
	if err := WriteLayer(&layer, m.upper, img.tree, img.objectPath); err != nil {
		t.Fatalf("WriteLayer: %v", err)
	}
	entries := layerFromTar(t, layer.Bytes())
	applied, err := layerstore.BuildTree("", append(slices.Clone(img.layers), entries)...)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := applied.Lookup(dir + "/" + longName('r', nameMax))
	if !ok || e.Mode&0o7777 != 0o600 || e.Xattrs["user.deep"] != "y" || e.Size != int64(len("Lower\nmore\n")) {
		t.Errorf("image + WriteLayer's layer: %+v", e)
	}
	if _, ok := applied.Lookup("deep/alias"); ok {
		t.Errorf("image + WriteLayer's layer still has deep/alias")
	}
}
