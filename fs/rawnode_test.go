package fs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// bridgeInodes counts the distinct go-fuse Inodes in the bridge's tree
// under the root (the root not counted): what a node costs the server.
func (s *Server) bridgeInodes() int {
	seen := map[*gofs.Inode]bool{}
	var walk func(in *gofs.Inode)
	walk = func(in *gofs.Inode) {
		for _, c := range in.Children() {
			if !seen[c] {
				seen[c] = true
				walk(c)
			}
		}
	}
	walk(s.u.root.EmbeddedInode())
	return len(seen)
}

// rawHeld counts the nodes the kernel holds from raw answers.
func (s *Server) rawHeld() int {
	n := 0
	for i := range s.u.raw.counts {
		if s.u.raw.counts[i].Load() != 0 {
			n++
		}
	}
	return n
}

// rawImage has what a walk meets: nested directories, files, symlinks,
// xattrs, a fifo, hard links, and a second layer with a whiteout, an opaque
// directory and a changed file.
// bigData is a file of passthroughMinSize bytes and a few more.
var bigData = strings.Repeat("big data", passthroughMinSize/8) + "end"

func rawImage(t *testing.T) *testImage {
	return newTestImage(t, func(b *layerBuilder) {
		b.dir("d", 0o755).dir("d/e", 0o750).file("d/e/f", 0o644, "f data").file("d/g", 0o600, "g data")
		b.dir("d/e/deep", 0o755).dir("d/e/deep/er", 0o755).file("d/e/deep/er/z", 0o644, "z")
		b.dir("empty", 0o755).dir("gone", 0o755).file("gone/x", 0o644, "x")
		b.dir("opq", 0o755).file("opq/old", 0o644, "old")
		b.file("h1", 0o644, "linked").link("h2", "h1")
		b.symlink("sl", "d/e/f").file("top", 0o4755, "top")
		b.file("big", 0o644, bigData) // read-only passthrough mounts read it so
		b.add(&layerstore.Entry{Path: "fifo", Type: layerstore.TypeFifo, Mode: 0o644})
		b.add(&layerstore.Entry{Path: "x1", Type: layerstore.TypeReg, Mode: 0o644, Xattrs: map[string]string{"user.a": "1", "user.b": "two"}})
	}, func(b *layerBuilder) {
		b.whiteout("gone/x").file("d/g", 0o640, "g changed")
		b.add(&layerstore.Entry{Path: "opq/.wh..wh..opq", Type: layerstore.TypeReg})
		b.file("opq/new", 0o644, "new")
	})
}

func mountRaw(t *testing.T, img *testImage, ro, noRaw bool) *testMount {
	t.Helper()
	return mountImage(t, img, mountOpts{readOnly: ro, noRaw: noRaw, trace: true})
}

// run runs a command in dir and returns its output, sorted by line when
// sorted.
func run(t *testing.T, dir string, sorted bool, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v in %s: %v: %s", name, args, dir, err, errb.String())
	}
	if !sorted {
		return out.String()
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// walkAll is what the tools see of a whole mount: every attribute stat
// shows, listings, link targets, xattrs and contents.
func walkAll(t *testing.T, dir string) []string {
	t.Helper()
	return []string{
		// Not the root: its upper copy's times are the mount's own.
		run(t, dir, true, "find", ".", "-mindepth", "1", "-printf", "%p %i %m %M %n %U %G %s %b %T@ %C@ %A@ %y %l\n"),
		run(t, dir, false, "ls", "-liR", "--time-style=full-iso"),
		run(t, dir, false, "getfattr", "-R", "-h", "-d", "-m", "-", "."),
		run(t, dir, false, "stat", "-c", "%n %i %a %h %u %g %s %b %X %Y %Z %F", "d", "d/e/f", "sl", "h1", "h2", "fifo", "opq", "top"),
		run(t, dir, false, "df", "--output=itotal,size", "."),
	}
}

// contents is every regular file's digest.
func contents(t *testing.T, dir string) string {
	return run(t, dir, true, "find", ".", "-type", "f", "-exec", "sha256sum", "{}", "+")
}

// Raw answers are the bridge's answers: the same walk on a mount with raw
// nodes and one without (read-only and writable) shows the same, twice
// (the second from what the kernel holds), and makes no Inode per entry.
func TestFS_RawNodes_SameAnswers(t *testing.T) {
	img := rawImage(t)
	for _, ro := range []bool{false, true} {
		t.Run(map[bool]string{false: "rw", true: "ro"}[ro], func(t *testing.T) {
			ref := mountRaw(t, img, ro, true)
			raw := mountRaw(t, img, ro, false)
			for round := range 2 {
				want, got := walkAll(t, ref.dir), walkAll(t, raw.dir)
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("round %d, view %d:\n%s", round, i, lineDiff(got[i], want[i]))
					}
				}
			}
			// Only the hard-linked file (one Inode for both names) is an Inode.
			if n := raw.srv.bridgeInodes(); n != 1 {
				t.Errorf("%d bridge Inodes after the walks, want 1 (the hard-linked file)", n)
			}
			if got, want := contents(t, raw.dir), contents(t, ref.dir); got != want {
				t.Errorf("contents:\n%s", lineDiff(got, want))
			}
			if n := ref.srv.bridgeInodes(); n < img.tree.Len()-5 {
				t.Errorf("the bridge-only mount has %d Inodes for %d entries: the count misses them", n, img.tree.Len())
			}
			if raw.srv.rawHeld() < img.tree.Len()-5 {
				t.Errorf("the kernel holds %d raw nodes of %d entries", raw.srv.rawHeld(), img.tree.Len())
			}
		})
	}
}

// A walk of the fixture images (5 layers of busybox; Debian minbase) with
// find, GNU ls and getfattr makes an Inode only for hard-linked files and
// the directories above them.
func TestFS_RawNodes_FixtureWalk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, fx := range []struct {
		name, ref string
		dir       func(testing.TB) string
	}{{"demo", "demo", fixtures.Dir}, {"debian", "debian", fixtures.Debian}} {
		t.Run(fx.name, func(t *testing.T) {
			st := storetest.Open(t)
			storetest.Load(t, st, filepath.Join(fx.dir(t), "oci"))
			t.Cleanup(func() { storetest.Check(t, st) })
			_, tree, err := st.ImageTree(fx.ref)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tree.Close() })
			want := map[uint64]bool{}
			_ = tree.Walk(func(e *layerstore.Entry) error {
				if e.Type != layerstore.TypeDir && e.Nlink > 1 {
					want[e.Ino] = true
					for p := parentPath(e.Path); p != ""; p = parentPath(p) {
						d, _ := tree.Lookup(p)
						want[d.Ino] = true
					}
				}
				return nil
			})
			for _, ro := range []bool{false, true} {
				t.Run(map[bool]string{false: "rw", true: "ro"}[ro], func(t *testing.T) {
					m := mountTree(t, tree, st.ObjectPath, mountOpts{readOnly: ro, trace: true})
					run(t, m.dir, false, "find", ".", "-printf", "%p %i %m %s %T@ %l\n")
					run(t, m.dir, false, "ls", "-lR", m.dir)
					run(t, m.dir, false, "getfattr", "-R", "-h", "-d", "-m", "-", ".")
					got := m.srv.bridgeInodes()
					t.Logf("%d entries, %d hard-linked inodes and their directories, %d bridge Inodes, %d raw nodes held", tree.Len(), len(want), got, m.srv.rawHeld())
					if got > len(want) {
						t.Errorf("%d bridge Inodes after the walk, want at most %d (hard links and their directories)", got, len(want))
					}
					if m.srv.rawHeld() < tree.Len()/2 {
						t.Errorf("only %d of %d entries held raw", m.srv.rawHeld(), tree.Len())
					}
				})
			}
		})
	}
}

// Changes to entries the kernel holds as raw nodes, each on a fresh mount:
// the kernel first looks everything up (stat of a walk), then the change,
// then what a user checks.
func TestFS_RawNodes_Changes(t *testing.T) {
	img := rawImage(t)
	walked := func(t *testing.T) *testMount {
		m := mountRaw(t, img, false, false)
		run(t, m.dir, false, "ls", "-lR", m.dir)
		if m.srv.bridgeInodes() != 1 {
			t.Fatalf("%d bridge Inodes after the walk", m.srv.bridgeInodes())
		}
		return m
	}
	t.Run("RenameDirThenCreate", func(t *testing.T) {
		m := walked(t)
		fd, err := unix.Open(m.p("d/e/deep"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := os.Rename(m.p("d"), m.p("moved")); err != nil {
			t.Fatal(err)
		}
		// Through the path, and through a descriptor the kernel kept of a
		// directory below the one renamed.
		if err := os.WriteFile(m.p("moved/e/new"), []byte("n"), 0o644); err != nil {
			t.Fatal(err)
		}
		nfd, err := unix.Openat(fd, "er/viafd", unix.O_CREAT|unix.O_WRONLY, 0o644)
		if err != nil {
			t.Fatalf("create through the kept directory: %v", err)
		}
		unix.Close(nfd)
		for p, want := range map[string]string{"moved/e/new": "n", "moved/e/f": "f data", "moved/e/deep/er/z": "z", "moved/e/deep/er/viafd": ""} {
			if got := mustRead(t, m.p(p)); got != want {
				t.Errorf("%s: %q, want %q", p, got, want)
			}
		}
		if _, err := os.Lstat(m.p("d")); !os.IsNotExist(err) {
			t.Errorf("d after the rename: %v", err)
		}
	})
	t.Run("RmdirCwdThenMkdir", func(t *testing.T) {
		m := walked(t)
		fd, err := unix.Open(m.p("empty"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		old := mustLstat(t, m.p("empty"))
		if err := os.Remove(m.p("empty")); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(m.p("empty"), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Openat(fd, "x", unix.O_CREAT|unix.O_WRONLY, 0o644); err != unix.ENOENT {
			t.Errorf("create in the removed directory: %v, want ENOENT", err)
		}
		if err := os.WriteFile(m.p("empty/y"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		st := mustLstat(t, m.p("empty"))
		if st.Ino == old.Ino || st.Mode&0o777 != 0o700 {
			t.Errorf("new directory: ino %d (old %d), mode %o", st.Ino, old.Ino, st.Mode)
		}
		if ents, err := os.ReadDir(m.p("empty")); err != nil || len(ents) != 1 || ents[0].Name() != "y" {
			t.Errorf("new directory holds %v (%v)", ents, err)
		}
	})
	t.Run("UnlinkOpenFile", func(t *testing.T) {
		m := walked(t)
		f, err := os.Open(m.p("d/e/f"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Remove(m.p("d/e/f")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 64)
		n, err := f.ReadAt(b, 0)
		if string(b[:n]) != "f data" {
			t.Errorf("read of the unlinked file: %q, %v", b[:n], err)
		}
		if _, err := f.Stat(); err != nil {
			t.Errorf("fstat of the unlinked file: %v", err)
		}
		if _, err := os.Lstat(m.p("d/e/f")); !os.IsNotExist(err) {
			t.Errorf("after unlink: %v", err)
		}
	})
	t.Run("RenameOverHeld", func(t *testing.T) {
		m := walked(t)
		src := mustLstat(t, m.p("d/g"))
		if err := os.Rename(m.p("d/g"), m.p("d/e/f")); err != nil {
			t.Fatal(err)
		}
		st := mustLstat(t, m.p("d/e/f"))
		if st.Ino != src.Ino || mustRead(t, m.p("d/e/f")) != "g changed" {
			t.Errorf("renamed over: ino %d (want %d), %q", st.Ino, src.Ino, mustRead(t, m.p("d/e/f")))
		}
	})
	t.Run("Metadata", func(t *testing.T) {
		m := walked(t)
		if err := os.Chmod(m.p("d/e/f"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lsetxattr(m.p("d/e/deep/er/z"), "user.new", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(m.p("d/e/deep"), 0o700); err != nil {
			t.Fatal(err)
		}
		out := run(t, m.dir, false, "stat", "-c", "%n %a", "d/e/f", "d/e/deep", "d/e/deep/er")
		if want := "d/e/f 600\nd/e/deep 700\nd/e/deep/er 755\n"; out != want {
			t.Errorf("modes:\n%s\nwant:\n%s", out, want)
		}
		if v, err := getxattr(m.p("d/e/deep/er/z"), "user.new"); err != nil || string(v) != "v" {
			t.Errorf("xattr: %q, %v", v, err)
		}
		if l := run(t, m.dir, false, "readlink", "sl"); l != "d/e/f\n" {
			t.Errorf("readlink: %q", l)
		}
	})
	t.Run("HardLinks", func(t *testing.T) {
		m := walked(t)
		a, b := mustLstat(t, m.p("h1")), mustLstat(t, m.p("h2"))
		if a.Ino != b.Ino || a.Nlink != 2 {
			t.Fatalf("h1 ino %d nlink %d, h2 ino %d", a.Ino, a.Nlink, b.Ino)
		}
		if err := os.WriteFile(m.p("h1"), []byte("written"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, m.p("h2")); got != "written" {
			t.Errorf("h2 after a write through h1: %q", got)
		}
		if b := mustLstat(t, m.p("h2")); b.Ino != a.Ino || b.Nlink != 2 {
			t.Errorf("h2 after copy-up: ino %d nlink %d", b.Ino, b.Nlink)
		}
	})
	t.Run("CopiedThroughRename", func(t *testing.T) {
		// d/e/deep/er/z held raw; renaming d copies it up (a rename copies
		// a lower directory whole): it is no longer pure, and is promoted
		// by the path the bridge knows now.
		m := walked(t)
		before := mustLstat(t, m.p("d/e/deep/er/z"))
		if err := os.Rename(m.p("d"), m.p("x")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.p("x/e/deep/er/z"), []byte("zz"), 0o644); err != nil {
			t.Fatal(err)
		}
		after := mustLstat(t, m.p("x/e/deep/er/z"))
		if after.Ino != before.Ino || mustRead(t, m.p("x/e/deep/er/z")) != "zz" {
			t.Errorf("z: ino %d (was %d), %q", after.Ino, before.Ino, mustRead(t, m.p("x/e/deep/er/z")))
		}
	})
}

// FORGETs give back what raw answers and promotions took: after the kernel
// drops every entry, no raw node is held and no Inode is left.
func TestFS_RawNodes_Forget(t *testing.T) {
	img := rawImage(t)
	m := mountRaw(t, img, false, false)
	run(t, m.dir, false, "ls", "-lR", m.dir)
	for _, p := range []string{"d/e/f", "d/e/deep/er/z", "x1"} {
		// An open rawFS leaves to the bridge (O_APPEND) promotes them and
		// their directories; a plain read-only one would not (rawfile.go).
		f, err := os.OpenFile(m.p(p), os.O_RDONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if m.srv.bridgeInodes() < 5 || m.srv.rawHeld() < 10 {
		t.Fatalf("after the walk: %d Inodes, %d raw nodes held", m.srv.bridgeInodes(), m.srv.rawHeld())
	}
	// The kernel forgets an inode when its last dentry goes.
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, e := range ents {
			m.srv.fuse.EntryNotify(1, e.Name())
		}
		if m.srv.rawHeld() == 0 && m.srv.bridgeInodes() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after invalidating every entry: %d Inodes, %d raw nodes held", m.srv.bridgeInodes(), m.srv.rawHeld())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And everything is there again.
	if got := mustRead(t, m.p("d/e/deep/er/z")); got != "z" {
		t.Errorf("z: %q", got)
	}
}

// The accounting of FORGET: the raw part first, then the bridge's, and
// rawFS's own lookup of a promoted node when its part is gone.
func TestRawNodes_ForgetAccounting(t *testing.T) {
	rn := &rawNodes{on: true, counts: make([]atomic.Uint32, 4)}
	rn.lookedUp(2)
	rn.lookedUp(2)
	if got := rn.forget(2, 1); got != 0 {
		t.Errorf("forget 1 of 2 raw: %d to the bridge", got)
	}
	rn.counts[2].Store(rn.counts[2].Load() | rawPromoted)
	if got := rn.forget(2, 3); got != 3 {
		t.Errorf("forget 3 of 1 raw + 2 bridge, promoted: %d to the bridge, want 2 + rawFS's own", got)
	}
	if rn.counts[2].Load() != 0 || rn.held(2) || rn.needsPromotion(2) {
		t.Errorf("after: %x", rn.counts[2].Load())
	}
	if got := rn.forget(3, 5); got != 5 {
		t.Errorf("a node of the bridge only: %d", got)
	}
}

// lineDiff shows the lines of a and b that differ.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out.WriteString("raw:    " + x + "\nbridge: " + y + "\n")
		}
	}
	return out.String()
}
