// Package testsuite is the conformance suite of strata's union file system,
// run against any way of mounting an image of a store: package fs's own
// Mount, a mount session, the snapshotter's mounts. A caller passes a
// MounterFunc, as containerd's snapshots/testsuite takes a snapshotter
// factory, and Run runs every test as a subtest:
//
//	func TestSuite(t *testing.T) { testsuite.Run(t, mountWithFS) }
//
// Every test mounts the fixture image (internal/fixtures), stored through the
// real store (storetest: transfer.Load of its OCI layout), on a fresh
// directory, ends the mount in t.Cleanup (failing the test when that fails,
// and detaching the mount lazily so that no failed test leaves one behind),
// and compares what the mount shows with a reference answer built without
// strata: the image as umoci unpacked it, or a plain copy of it that the same
// operations were applied to. The store is checked when the suite ends.
//
//	suite.go    Run, mounts; reference comparison; fstest.TestFS; read-only
//	            mounts; the upper dir against Diff; objects never change
//	ops.go      named operation scripts, mount against a plain copy
//	random.go   a seeded random sequence of operations (STRATA_SEED)
//	posix.go    go-fuse's posixtest table
//	child.go    steps that must run in a child process (mmap)
//
// The suite needs root (FUSE, owners, device nodes) and skips without it.
package testsuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/treecmp"
	"github.com/strata-dev/strata/layerstore"
)

// MountOptions are what a test asks of one mount.
type MountOptions struct {
	// ReadOnly mounts without a top layer: every change fails with EROFS.
	ReadOnly bool
	// Passthrough lets the kernel read lower files from their objects
	// (FUSE passthrough) where it can; false reads every file through the
	// server.
	Passthrough bool
	// Writeback lets the kernel cache writes to the top layer (the FUSE
	// writeback cache, fs.Options.Writeback); false sends each write to the
	// server.
	Writeback bool
}

// Mount is a live mount a MounterFunc made.
type Mount struct {
	// Upper is the top layer's directory, in package fs's upper format
	// (what fs.Diff reads); "" for a read-only mount.
	Upper string
	// Passthrough reports whether the kernel granted FUSE passthrough.
	Passthrough bool
	// Writeback reports whether the kernel granted the writeback cache.
	Writeback bool
	// Unmount ends the mount; the suite calls it once. It may delete Upper.
	Unmount func() error
}

// MounterFunc mounts image ref of st on dir, an empty directory, with the
// image's setuid bits and device nodes in effect (the reference answer is
// a plain directory, where both are), for test t.
type MounterFunc func(t *testing.T, st *layerstore.Store, ref, dir string, o MountOptions) (*Mount, error)

// suite is one Run: the mounter, and the store with the images every test
// mounts.
type suite struct {
	mount  MounterFunc
	st     *layerstore.Store
	demo   *suiteImage // the fixture image
	empty  *suiteImage // an image of no layers
	rootfs string      // umoci's unpack of the fixture image: the reference answer
}

// suiteImage is a stored image with its merged tree.
type suiteImage struct {
	Ref     string
	Tree    *layerstore.Tree
	Objects string // the store's objects dir
}

// Run runs the suite against the mounts mount makes, each test as a subtest
// of t. It skips t without root or /dev/fuse.
func Run(t *testing.T, mount MounterFunc) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, owners and device nodes")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	dir := fixtures.Dir(t)
	ts := &suite{mount: mount, st: storetest.Open(t), rootfs: filepath.Join(dir, "rootfs")}
	storetest.Load(t, ts.st, filepath.Join(dir, "oci"))
	if _, err := ts.st.NewImage(context.Background(), layerstore.NewImageOptions{Names: []string{"empty:latest"}}); err != nil {
		t.Fatal(err)
	}
	ts.demo = ts.image(t, "demo:latest")
	ts.empty = ts.image(t, "empty:latest")
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"LayerTreeMatchesRootfs", ts.testLayerTreeMatchesRootfs},
		{"Reference", ts.testReference},
		{"Reference_InodesStableAcrossRemounts", ts.testReference_InodesStableAcrossRemounts},
		{"FSTest", ts.testFSTest},
		{"ReadOnly", ts.testReadOnly},
		{"UpperAndObjects", ts.testUpperAndObjects},
		{"Ops", ts.testOps},
		{"PassthroughWriterWhileReading", ts.testPassthroughWriterWhileReading},
		{"Random", ts.testRandom},
		{"Posix", ts.testPosix},
	} {
		t.Run(tc.name, tc.fn)
	}
}

func (ts *suite) image(t *testing.T, ref string) *suiteImage {
	t.Helper()
	_, tree, err := ts.st.ImageTree(ref)
	if err != nil {
		t.Fatal(err)
	}
	// After every subtest and mount: its entries are read to the end.
	t.Cleanup(func() {
		if err := tree.Close(); err != nil {
			t.Errorf("close the tree of %s: %v", ref, err)
		}
	})
	return &suiteImage{Ref: ref, Tree: tree, Objects: filepath.Join(ts.st.Root(), "objects")}
}

// suiteMount is a live mount of an image.
type suiteMount struct {
	*Mount
	Dir  string // mountpoint
	Img  *suiteImage
	done bool
}

type suiteMountOptions = MountOptions

// mountImage mounts img on a fresh directory and unmounts it when the test
// ends.
func (ts *suite) mountImage(t *testing.T, img *suiteImage, o suiteMountOptions) *suiteMount {
	t.Helper()
	m := &suiteMount{Dir: filepath.Join(t.TempDir(), "mnt"), Img: img}
	if err := os.Mkdir(m.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mnt, err := ts.mount(t, ts.st, img.Ref, m.Dir, o)
	if err != nil {
		t.Fatalf("mount %s on %s: %v", img.Ref, m.Dir, err)
	}
	m.Mount = mnt
	if o.Writeback && !o.ReadOnly && !mnt.Writeback {
		// The writeback cases would run as plain ones and prove nothing.
		t.Errorf("mount %s on %s: the writeback cache was asked for and not granted", img.Ref, m.Dir)
	}
	t.Cleanup(func() {
		if !m.done {
			m.unmount(t)
		}
	})
	return m
}

// unmount unmounts m, failing the test when Unmount fails; the mount is then
// detached lazily so that it does not outlive the test.
func (m *suiteMount) unmount(t *testing.T) {
	t.Helper()
	m.done = true
	if err := m.Mount.Unmount(); err != nil {
		t.Errorf("Unmount(%s): %v", m.Dir, err)
		if err := unix.Unmount(m.Dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("lazy unmount of %s: %v", m.Dir, err)
		}
	}
}

// Unmount ends the mount within the test.
func (m *suiteMount) Unmount(t *testing.T) {
	t.Helper()
	if !m.done {
		m.unmount(t)
	}
}

// suiteSnapshot reads the tree at root, failing the test on error.
func suiteSnapshot(t *testing.T, root string, opt treecmp.Options) *treecmp.Tree {
	t.Helper()
	tr, err := treecmp.Snapshot(root, opt)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return tr
}

// suiteDiffs fails the test with every difference; what names the two
// trees compared, A first.
func suiteDiffs(t *testing.T, what string, diffs []string) {
	t.Helper()
	if len(diffs) == 0 {
		return
	}
	const max = 40
	total, more := len(diffs), ""
	if len(diffs) > max {
		more = fmt.Sprintf("\n\t… and %d more", len(diffs)-max)
		diffs = diffs[:max]
	}
	t.Errorf("%s: %d differences (A is the first, B the second):\n\t%s%s", what, total, strings.Join(diffs, "\n\t"), more)
}

// suiteCopyRootfs makes a plain copy of the reference rootfs with cp -a: the
// reference a script is applied to.
func (ts *suite) copyRootfs(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "ref")
	if out, err := exec.Command("cp", "-a", ts.rootfs, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", ts.rootfs, dst, err, out)
	}
	return dst
}

// The reference comparison compares everything but inode numbers, which
// differ between file systems.
var suiteRefOptions = treecmp.Options{IgnoreInodes: true}

// testLayerTreeMatchesRootfs checks the reference itself: the tree built
// from the layers equals umoci's unpack. When this fails, the mount tests
// below compare against a wrong answer.
func (ts *suite) testLayerTreeMatchesRootfs(t *testing.T) {
	img := ts.demo
	suiteDiffs(t, "umoci rootfs vs layer tree",
		treecmp.Compare(suiteSnapshot(t, ts.rootfs, suiteRefOptions), treecmp.FromLayerTree(img.Tree), suiteRefOptions))
}

// testReference mounts the fixture image and compares the mount with
// umoci's unpack: names, types, modes, owners, sizes, contents, xattrs, link
// targets, device numbers, mtimes, hard-link groups and link counts.
func (ts *suite) testReference(t *testing.T) {
	img := ts.demo
	ref := suiteSnapshot(t, ts.rootfs, suiteRefOptions)
	for _, tc := range []struct {
		name string
		o    suiteMountOptions
	}{
		{"rw", suiteMountOptions{}},
		{"ro", suiteMountOptions{ReadOnly: true}},
		{"rw-passthrough", suiteMountOptions{Passthrough: true}},
		{"ro-passthrough", suiteMountOptions{ReadOnly: true, Passthrough: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := ts.mountImage(t, img, tc.o)
			got := suiteSnapshot(t, m.Dir, suiteRefOptions)
			suiteDiffs(t, "umoci rootfs vs mount", treecmp.Compare(ref, got, suiteRefOptions))
			// Read twice: the second walk is served from caches.
			suiteDiffs(t, "umoci rootfs vs mount, second walk", treecmp.Compare(ref, suiteSnapshot(t, m.Dir, suiteRefOptions), suiteRefOptions))
			// The mount shows the tree's own inode numbers.
			suiteDiffs(t, "layer tree vs mount, inode numbers included",
				treecmp.Compare(treecmp.FromLayerTree(img.Tree), got, treecmp.Options{}))
		})
	}
}

// testReference_InodesStableAcrossRemounts mounts the same tree twice,
// one after the other, and expects the same inode numbers.
func (ts *suite) testReference_InodesStableAcrossRemounts(t *testing.T) {
	img := ts.demo
	m1 := ts.mountImage(t, img, suiteMountOptions{})
	first := suiteSnapshot(t, m1.Dir, treecmp.Options{})
	m1.Unmount(t)
	m2 := ts.mountImage(t, img, suiteMountOptions{})
	suiteDiffs(t, "first mount vs second mount, inode numbers included", treecmp.Compare(first, suiteSnapshot(t, m2.Dir, treecmp.Options{}), treecmp.Options{}))
}

// testFSTest runs testing/fstest.TestFS over subtrees of the mount
// (os.DirFS), expecting a sample of the image's paths. Left out: the fifo
// (var/log/pipe: opening it blocks), the device (dev/null), symlinks
// (os.DirFS follows them: sbin/init out of the mount, usr/bin/awk dangles)
// and the big files (bin/, app/blob-copy.bin: TestFS reads every file many
// times in small pieces, minutes through FUSE).
func (ts *suite) testFSTest(t *testing.T) {
	img := ts.demo
	for _, ro := range []bool{false, true} {
		t.Run(map[bool]string{false: "rw", true: "ro"}[ro], func(t *testing.T) {
			m := ts.mountImage(t, img, suiteMountOptions{ReadOnly: ro})
			for _, tc := range []struct {
				dir      string
				expected []string
			}{
				{"app/bin", []string{"run"}},
				{"app/data", []string{"only"}},
				{"etc", []string{"group", "motd", "passwd"}},
				{"home", []string{"user", "user/notes.txt"}},
				{"usr/share", []string{"doc/demo/README", "doc/demo", "doc"}},
				{"root", nil},
				{"tmp", nil},
			} {
				t.Run(tc.dir, func(t *testing.T) {
					if err := fstest.TestFS(os.DirFS(filepath.Join(m.Dir, tc.dir)), tc.expected...); err != nil {
						t.Errorf("fstest.TestFS(%s): %v", tc.dir, err)
					}
				})
			}
		})
	}
}

// testReadOnly expects every kind of change on a read-only mount to
// fail with EROFS and to leave the tree as it was.
func (ts *suite) testReadOnly(t *testing.T) {
	img := ts.demo
	m := ts.mountImage(t, img, suiteMountOptions{ReadOnly: true})
	j := func(p string) string { return filepath.Join(m.Dir, p) }
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"open for writing", func() error {
			f, err := os.OpenFile(j("etc/passwd"), os.O_WRONLY, 0)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"create", func() error { return os.WriteFile(j("etc/new"), nil, 0o644) }},
		{"truncate", func() error { return os.Truncate(j("etc/passwd"), 0) }},
		{"chmod", func() error { return os.Chmod(j("etc/passwd"), 0o600) }},
		{"chown", func() error { return os.Lchown(j("etc/passwd"), 1, 1) }},
		{"utimes", func() error {
			return unix.UtimesNanoAt(unix.AT_FDCWD, j("etc/passwd"), []unix.Timespec{{Sec: 1}, {Sec: 1}}, unix.AT_SYMLINK_NOFOLLOW)
		}},
		{"setxattr", func() error { return unix.Lsetxattr(j("etc/motd"), "user.x", []byte("1"), 0) }},
		{"removexattr", func() error { return unix.Lremovexattr(j("etc/motd"), "user.origin") }},
		{"mkdir", func() error { return os.Mkdir(j("newdir"), 0o755) }},
		{"rmdir", func() error { return unix.Rmdir(j("root")) }},
		{"unlink", func() error { return unix.Unlink(j("etc/group")) }},
		{"rename", func() error { return os.Rename(j("etc/group"), j("etc/group2")) }},
		{"symlink", func() error { return os.Symlink("x", j("link")) }},
		{"link", func() error { return os.Link(j("etc/group"), j("etc/group2")) }},
		{"mkfifo", func() error { return unix.Mkfifo(j("fifo"), 0o644) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, unix.EROFS) {
				t.Errorf("%s on a read-only mount: got %v, want EROFS", tc.name, err)
			}
		})
	}
	suiteDiffs(t, "umoci rootfs vs read-only mount after failed changes",
		treecmp.Compare(suiteSnapshot(t, ts.rootfs, suiteRefOptions), suiteSnapshot(t, m.Dir, suiteRefOptions), suiteRefOptions))
}

// testUpperAndObjects applies every operation script to one mount and checks
// the upper dir: it holds what Diff reports, which is what changed between
// the tree and the mount. Then it unmounts (which may delete the upper dir)
// and checks that the objects dir is exactly as it was (names, modes,
// contents, mtimes, inodes).
func (ts *suite) testUpperAndObjects(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "passthrough"}[pt], func(t *testing.T) {
			img := ts.demo
			objOpt := treecmp.Options{}
			objectsBefore := suiteSnapshot(t, img.Objects, objOpt)
			m := ts.mountImage(t, img, suiteMountOptions{Passthrough: pt})
			suiteOpenHandleWrites(t, m.Dir)
			for _, s := range suiteScripts {
				for _, st := range s.steps {
					_, _ = st.do(m.Dir) // errors are the ops tests' business
				}
			}
			final := suiteSnapshot(t, m.Dir, treecmp.Options{IgnoreInodes: true})
			changes, err := fs.Diff(m.Upper, img.Tree)
			if err != nil {
				t.Fatalf("fs.Diff: %v", err)
			}
			suiteCheckDiff(t, img, m.Upper, final, changes)
			m.Unmount(t)

			suiteDiffs(t, "objects dir before vs after the mount",
				treecmp.Compare(objectsBefore, suiteSnapshot(t, img.Objects, objOpt), objOpt))
		})
	}
}

// suiteOpenHandleWrites opens lower files read-only, then for writing (which
// copies them up), and writes through every handle it can: the case where a
// union that shares one backing file per inode writes into the object.
func suiteOpenHandleWrites(t *testing.T, mnt string) {
	t.Helper()
	for _, p := range []string{"etc/group", "home/user/notes.txt", "usr/share/doc/demo/README", "app/data/only"} {
		full := filepath.Join(mnt, p)
		ro, err := os.Open(full)
		if err != nil {
			t.Errorf("open %s read-only: %v", p, err)
			continue
		}
		buf := make([]byte, 4)
		_, _ = ro.Read(buf)
		rw, err := os.OpenFile(full, os.O_RDWR, 0)
		if err != nil {
			t.Errorf("open %s read-write: %v", p, err)
			ro.Close()
			continue
		}
		if _, err := rw.WriteAt([]byte("OVERWRITTEN"), 0); err != nil {
			t.Errorf("write %s: %v", p, err)
		}
		wo, err := os.OpenFile(full, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			if _, err := wo.Write([]byte("appended\n")); err != nil {
				t.Errorf("append %s: %v", p, err)
			}
			wo.Close()
		}
		rw.Close()
		ro.Close()
	}
}

// suiteCheckDiff checks Diff's changes against what did change between the
// image's tree and the final mount (final), and against the upper dir:
//   - every added path is reported as added (or changed, when its type
//     changed), every changed path as changed (or added, when it was
//     replaced), every deleted path as deleted, itself or an ancestor;
//   - nothing is reported that did not change (a directory is changed when
//     anything below it is);
//   - each added or changed non-directory is in the upper dir with the
//     mount's type, mode, owner, xattrs and, when it differs from the
//     lower, content.
func suiteCheckDiff(t *testing.T, img *suiteImage, upper string, final *treecmp.Tree, changes []fs.Change) {
	t.Helper()
	lower := treecmp.FromLayerTree(img.Tree)
	kinds := map[string]byte{}
	for _, c := range changes {
		if _, dup := kinds[c.Path]; dup {
			t.Errorf("Diff reports %q twice", c.Path)
		}
		kinds[c.Path] = c.Kind
	}
	const (
		added   = 'A'
		changed = 'C'
		deleted = 'D'
	)
	// A file's link count alone is no change (as for docker diff): the
	// other names of a hard-link group one name of which went are unchanged.
	differs := func(p string) bool {
		l, n := *lower.Nodes[p], *final.Nodes[p]
		if l.Type != layerstore.TypeDir {
			l.Nlink, n.Nlink = 0, 0
		}
		return len(treecmp.Compare(
			&treecmp.Tree{Nodes: map[string]*treecmp.Node{p: &l}},
			&treecmp.Tree{Nodes: map[string]*treecmp.Node{p: &n}},
			treecmp.Options{IgnoreInodes: true, IgnoreDirMtime: true})) > 0
	}
	touched := map[string]bool{} // paths whose subtree changed
	mark := func(p string) {
		for {
			touched[p] = true
			if p == "" {
				return
			}
			p = parentPath(p)
		}
	}
	var problems []string
	for _, p := range final.Paths() {
		if p == "" {
			continue // like docker diff, Diff never lists the root
		}
		n := final.Nodes[p]
		l, inLower := lower.Nodes[p]
		switch {
		case !inLower:
			mark(p)
			if k := kinds[p]; k != added {
				problems = append(problems, fmt.Sprintf("added %s: Diff says %s, want A", p, kindName(k)))
			}
		case l.Type != n.Type:
			mark(p)
			if k := kinds[p]; k != added && k != changed {
				problems = append(problems, fmt.Sprintf("%s turned from %s into %s: Diff says %s, want C or A", p, l.Type, n.Type, kindName(k)))
			}
		case differs(p):
			mark(p)
			if k := kinds[p]; k != changed && k != added {
				problems = append(problems, fmt.Sprintf("changed %s: Diff says %s, want C", p, kindName(k)))
			}
		}
	}
	for _, p := range lower.Paths() {
		if _, ok := final.Nodes[p]; ok {
			continue
		}
		mark(p)
		reported := false
		for q := p; ; q = parentPath(q) {
			if kinds[q] == deleted || (q != p && kinds[q] == added) {
				reported = true
				break
			}
			if q == "" {
				break
			}
		}
		if !reported {
			problems = append(problems, fmt.Sprintf("deleted %s: Diff says %s, want D (of it or a parent)", p, kindName(kinds[p])))
		}
	}
	for _, c := range changes {
		switch c.Kind {
		case added, changed:
			if _, ok := final.Nodes[c.Path]; !ok {
				problems = append(problems, fmt.Sprintf("Diff says %s %s, which the mount does not have", kindName(c.Kind), c.Path))
			} else if !touched[c.Path] {
				problems = append(problems, fmt.Sprintf("Diff says %s %s, but nothing in or below it changed", kindName(c.Kind), c.Path))
			}
		case deleted:
			if _, ok := final.Nodes[c.Path]; ok {
				if l, ok := lower.Nodes[c.Path]; !ok || l.Type == final.Nodes[c.Path].Type {
					problems = append(problems, fmt.Sprintf("Diff says D %s, which the mount still has", c.Path))
				}
			}
			if _, ok := lower.Nodes[c.Path]; !ok {
				problems = append(problems, fmt.Sprintf("Diff says D %s, which the image does not have", c.Path))
			}
		default:
			problems = append(problems, fmt.Sprintf("Diff reports kind %q for %s", c.Kind, c.Path))
		}
	}
	// The upper holds what Diff reports.
	for _, c := range changes {
		n, ok := final.Nodes[c.Path]
		if c.Kind == deleted || !ok || n.Type == layerstore.TypeDir {
			continue
		}
		up, err := readUpperNode(upper, c.Path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("Diff says %s %s, but the upper dir has no readable entry: %v", kindName(c.Kind), c.Path, err))
			continue
		}
		want := *n
		want.Nlink, up.Nlink = 0, 0 // link counts are the mount's business
		want.Mtime, up.Mtime = 0, 0 // so are times
		for _, d := range treecmp.Compare(
			&treecmp.Tree{Nodes: map[string]*treecmp.Node{c.Path: &want}},
			&treecmp.Tree{Nodes: map[string]*treecmp.Node{c.Path: up}},
			treecmp.Options{IgnoreInodes: true}) {
			problems = append(problems, "upper entry of "+kindName(c.Kind)+" "+c.Path+" differs from the mount: "+d)
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Errorf("Diff(upper) against the changes the mount shows: %d problems:\n\t%s\nDiff returned: %v", len(problems), strings.Join(problems, "\n\t"), changes)
	}
}

// readUpperNode reads one path of the upper dir as a reader of the upper
// format sees it: strata's own attributes (fs.XattrPrefix) are not part of
// it, and the content of a metacopy file (marked with the digest of the
// object that holds its data) is that object's.
func readUpperNode(upper, p string) (*treecmp.Node, error) {
	full := filepath.Join(upper, p)
	tr, err := treecmp.Snapshot(full, treecmp.Options{
		Exclude:           func(q string) bool { return q != "" },
		IgnoreXattrPrefix: []string{fs.XattrPrefix},
	})
	if err != nil {
		return nil, err
	}
	n := tr.Nodes[""]
	n.Path = p
	buf := make([]byte, 256)
	if k, err := unix.Lgetxattr(full, fs.XattrPrefix+"metacopy", buf); err == nil {
		d, err := digest.Parse(string(buf[:k]))
		if err != nil {
			return nil, fmt.Errorf("%s: metacopy digest: %w", full, err)
		}
		n.SHA256 = d.Encoded()
	}
	return n, nil
}

func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func kindName(k byte) string {
	if k == 0 {
		return "nothing"
	}
	return string(k)
}

// suiteReadFile reads a whole file, for observations.
func suiteReadFile(p string) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b bytes.Buffer
	_, err = io.Copy(&b, f)
	return b.String(), err
}
