package fs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// TestFS_Backing_RefusedFileSystem: on a read-only passthrough mount whose
// objects are on two file systems, one that the kernel refuses as backing
// files (overlayfs, as deep as the stacking depth allows), a large file of
// that one is read through the server, and the others still pass through:
// go-fuse turns passthrough off for the whole mount at the first backing
// file the kernel refuses.
func TestFS_Backing_RefusedFileSystem(t *testing.T) {
	contents := map[string]string{}
	img := newTestImage(t, func(b *layerBuilder) {
		b.dir("a", 0o755).dir("b", 0o755).dir("c", 0o755)
		for _, p := range []string{"a/big", "b/big", "c/big"} {
			contents[p] = strings.Repeat(p+"\n", (2<<20)/len(p+"\n"))
			b.file(p, 0o644, contents[p])
		}
	})
	// b/big's object on overlayfs.
	lower := t.TempDir()
	bd := digest.FromString(contents["b/big"])
	if err := os.WriteFile(filepath.Join(lower, bd.Encoded()), []byte(contents["b/big"]), 0o444); err != nil {
		t.Fatal(err)
	}
	ovl := mountOverlay(t, lower)
	objects := func(d digest.Digest) string {
		if d == bd {
			return filepath.Join(ovl, d.Encoded())
		}
		return img.objectPath(d)
	}
	m := mountTree(t, img.tree, objects, mountOpts{readOnly: true, passthrough: true, trace: true})
	if !m.srv.Passthrough() {
		t.Skipf("no passthrough here: %s", m.logs.String())
	}
	for _, c := range []struct {
		path  string
		reads bool
	}{{"a/big", false}, {"b/big", true}, {"c/big", false}, {"a/big", false}} {
		m.srv.Trace(true)
		if got := mustRead(t, m.p(c.path)); got != contents[c.path] {
			t.Fatalf("%s: %d bytes, want %d", c.path, len(got), len(contents[c.path]))
		}
		if n := traceOf(m, "READ"); (n > 0) != c.reads {
			t.Errorf("reading %s sent %d READs; want them: %v (passthrough %v)", c.path, n, c.reads, !c.reads)
		}
	}
	if !strings.Contains(m.logs.String(), "refuses files of this file system") {
		t.Errorf("the server log does not say why b/big is not passed through:\n%s", m.logs.String())
	}
}

// TestFS_Backing_ReusedDevice: the server knows a file system that the
// kernel takes (or refuses) backing files of by more than its device
// number, which the next file system mounted gets once it is unmounted:
// a file of overlayfs (refused) with the probe's device number is not
// taken for one of the probe's file system, nor a file of a tmpfs with the
// overlayfs's number for one of the refused overlayfs. The numbers are
// made to collide here, as an unmount and a mount would make them.
func TestFS_Backing_ReusedDevice(t *testing.T) {
	content := strings.Repeat("x", 2<<20)
	img := newTestImage(t, func(b *layerBuilder) { b.file("big", 0o644, content) })
	lower := t.TempDir()
	d := digest.FromString(content)
	if err := os.WriteFile(filepath.Join(lower, d.Encoded()), []byte(content), 0o444); err != nil {
		t.Fatal(err)
	}
	ovl := mountOverlay(t, lower)
	tmp := t.TempDir()
	if err := unix.Mount("tmpfs", tmp, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(tmp, 0); err != nil {
			t.Error(err)
		}
	})
	m := mountTree(t, img.tree, img.objectPath, mountOpts{readOnly: true, passthrough: true})
	if !m.srv.Passthrough() {
		t.Skip("no passthrough here")
	}
	b := &m.srv.u.backing
	open := func(p string) (int, unix.Stat_t) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		st, err := fstat(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		return int(f.Fd()), st
	}
	probeSt := mustLstat(t, img.objectPath(d))
	ovlFd, ovlSt := open(filepath.Join(ovl, d.Encoded()))
	if b.ok(ovlFd, &ovlSt) {
		t.Fatal("the kernel takes overlayfs's files as backing files here: the test tests nothing")
	}
	st := ovlSt
	st.Dev = probeSt.Dev
	if b.ok(ovlFd, &st) {
		t.Error("a file of overlayfs with the probe's device number is taken as a backing file")
	}
	if err := os.WriteFile(filepath.Join(tmp, "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpFd, tmpSt := open(filepath.Join(tmp, "f"))
	tmpSt.Dev = ovlSt.Dev
	if !b.ok(tmpFd, &tmpSt) {
		t.Error("a file of a tmpfs with the device number of a refused overlayfs is refused")
	}
}
