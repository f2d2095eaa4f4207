package fs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/syncbuf"
	"github.com/strata-dev/strata/layerstore"
)

// Accessing mmap'd memory of a FUSE file from the process that serves the
// mount can deadlock (a thread stuck in the page fault holds up the Go
// runtime's stop-the-world, which stops the server that would answer the
// fault), so mmap tests run in a child: the test binary itself, re-executed
// with STRATA_FS_TEST_MMAP naming the file.
func init() {
	if p := os.Getenv("STRATA_FS_TEST_MMAP"); p != "" {
		if err := mmapWriteHere(p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

func mmapWriteHere(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	mem[0] = 'M'
	return errors.Join(unix.Msync(mem, unix.MS_SYNC), unix.Munmap(mem))
}

// mmapWrite writes 'M' at offset 0 of p through a shared mapping, in a child
// process.
func mmapWrite(p string) error {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STRATA_FS_TEST_MMAP="+p)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mmap write %s: %w: %s", p, err, out)
	}
	return nil
}

// testImage is a tree built from layers made in the test, with contents in
// a scratch objects dir.
type testImage struct {
	tree    *layerstore.Tree
	objects string
	layers  [][]*layerstore.Entry
}

func (img *testImage) objectPath(d digest.Digest) string {
	return filepath.Join(img.objects, d.Encoded())
}

// layerBuilder makes the entries of one layer.
type layerBuilder struct {
	t       *testing.T
	objects string
	entries []*layerstore.Entry
}

const testMtime = 1_600_000_000_123_456_789

func (b *layerBuilder) add(e *layerstore.Entry) *layerBuilder {
	if e.Mtime == 0 {
		e.Mtime = testMtime
	}
	b.entries = append(b.entries, e)
	return b
}

func (b *layerBuilder) dir(p string, mode uint32) *layerBuilder {
	return b.add(&layerstore.Entry{Path: p, Type: layerstore.TypeDir, Mode: mode})
}

func (b *layerBuilder) file(p string, mode uint32, content string) *layerBuilder {
	d := writeTestObject(b.t, b.objects, []byte(content))
	return b.add(&layerstore.Entry{Path: p, Type: layerstore.TypeReg, Mode: mode, Size: int64(len(content)), Digest: d})
}

func (b *layerBuilder) link(p, target string) *layerBuilder {
	for _, e := range b.entries {
		if e.Path == target {
			c := *e
			c.Path, c.HardLink = p, target
			return b.add(&c)
		}
	}
	b.t.Fatalf("link %s: no entry %s in this layer", p, target)
	return b
}

func (b *layerBuilder) symlink(p, target string) *layerBuilder {
	return b.add(&layerstore.Entry{Path: p, Type: layerstore.TypeSymlink, Mode: 0o777, Link: target})
}

func (b *layerBuilder) whiteout(p string) *layerBuilder {
	dir, name := path.Split(p)
	return b.add(&layerstore.Entry{Path: path.Join(dir, layerstore.WhiteoutPrefix+name), Type: layerstore.TypeWhiteout})
}

func writeTestObject(t testing.TB, objects string, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	p := filepath.Join(objects, d.Encoded())
	if _, err := os.Stat(p); err == nil {
		return d
	}
	if err := os.WriteFile(p, content, 0o444); err != nil {
		t.Fatal(err)
	}
	return d
}

// newTestImage builds an image from layers that build fills in.
func newTestImage(t *testing.T, build ...func(b *layerBuilder)) *testImage {
	t.Helper()
	img := &testImage{objects: filepath.Join(t.TempDir(), "objects")}
	if err := os.Mkdir(img.objects, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, fn := range build {
		b := &layerBuilder{t: t, objects: img.objects}
		fn(b)
		sortEntries(b.entries)
		img.layers = append(img.layers, b.entries)
	}
	tree, err := layerstore.BuildTree(digest.FromString(t.Name()), img.layers...)
	if err != nil {
		t.Fatal(err)
	}
	img.tree = tree
	return img
}

func sortEntries(es []*layerstore.Entry) {
	slices.SortFunc(es, func(a, b *layerstore.Entry) int {
		return bytes.Compare(layerstore.Key(a.Path), layerstore.Key(b.Path))
	})
}

// testMount is a live mount made by mountImage.
type testMount struct {
	dir, upper string
	srv        *Server
	logs       *syncbuf.Buffer
}

func (m *testMount) p(rel string) string { return filepath.Join(m.dir, rel) }

type mountOpts struct {
	readOnly, passthrough, writeback bool
	trace                            bool // count requests (Server.Trace)
	noRaw                            bool // every node a bridge Inode (rawnode.go)
	shared                           bool // other users reach the mount and its upper dir (mode 0755)
	tmpfsUpper                       bool // the upper dir on a tmpfs of its own (inode numbers never reused)
}

// mountImage mounts img on a t.TempDir() and unmounts it when the test ends,
// failing the test if that fails.
func mountImage(t *testing.T, img *testImage, o mountOpts) *testMount {
	t.Helper()
	return mountTree(t, img.tree, img.objectPath, o)
}

// mountTree is mountImage for a tree and its objects.
func mountTree(t *testing.T, tree *layerstore.Tree, objects func(digest.Digest) string, o mountOpts) *testMount {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base := t.TempDir()
	perm := os.FileMode(0o700)
	if o.shared {
		perm = 0o755
		for _, d := range []string{filepath.Dir(base), base} {
			if err := os.Chmod(d, perm); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := &testMount{dir: filepath.Join(base, "mnt"), logs: &syncbuf.Buffer{}}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if !o.readOnly {
		m.upper = filepath.Join(base, "upper")
		if o.tmpfsUpper {
			fsDir := filepath.Join(base, "tmpfs")
			if err := os.Mkdir(fsDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("tmpfs", fsDir, "tmpfs", 0, "mode=0700"); err != nil {
				t.Fatalf("mount tmpfs: %v", err)
			}
			t.Cleanup(func() {
				if err := unix.Unmount(fsDir, 0); err != nil {
					t.Errorf("unmount tmpfs: %v", err)
					_ = unix.Unmount(fsDir, unix.MNT_DETACH)
				}
			})
			m.upper = filepath.Join(fsDir, "upper")
		}
		if err := os.Mkdir(m.upper, perm); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := Mount(m.dir, tree, &Options{
		ReadOnly:    o.readOnly,
		Upper:       m.upper,
		Objects:     objects,
		Passthrough: o.passthrough,
		Writeback:   o.writeback,
		Trace:       o.trace,
		noRaw:       o.noRaw,
		AllowOther:  true,
		Logger:      slog.New(slog.NewTextHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		FsName:      "strata-test",
	})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	m.srv = srv
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
			_ = unix.Unmount(m.dir, unix.MNT_DETACH)
		}
		if strings.Contains(m.logs.String(), "promotion of a raw node failed") {
			t.Errorf("server log:\n%s", m.logs.String())
		}
	})
	return m
}

// unmount ends the mount inside the test (the cleanup then has nothing to do).
func (m *testMount) unmount(t *testing.T) {
	t.Helper()
	if err := m.srv.Unmount(); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Path-based calls for tests; the package itself reaches the upper dir by
// descriptor only.
func lstat(p string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Lstat(p, &st)
	return st, err
}

func getxattr(p, name string) ([]byte, error) {
	return readXattr(func(buf []byte) (int, error) { return unix.Lgetxattr(p, name, buf) })
}

func listxattr(p string) ([]string, error) {
	return listNames(func(b []byte) (int, error) { return unix.Llistxattr(p, b) })
}

func mustLstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	st, err := lstat(p)
	if err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

// walkNames returns every path below root.
func walkNames(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// layerFromTar stores a layer tar in a scratch store, as an import does,
// and returns the entries the store made of it, in key order.
func layerFromTar(t *testing.T, b []byte) []*layerstore.Entry {
	t.Helper()
	st := storetest.Open(t)
	img, err := st.NewImage(context.Background(), layerstore.NewImageOptions{Layers: []layerstore.NewLayer{{
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
	}}})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := st.LayerEntries(img.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// objectsSnapshot records everything about every file of an objects dir.
func objectsSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range ents {
		p := filepath.Join(dir, de.Name())
		st := mustLstat(t, p)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		out[de.Name()] = fmt.Sprintf("mode %o nlink %d ino %d size %d mtime %d.%d ctime %d.%d sha %s",
			st.Mode, st.Nlink, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, hex.EncodeToString(sum[:]))
	}
	return out
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
