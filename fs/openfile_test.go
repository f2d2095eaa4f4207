package fs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// Operations on files that are open while their name goes (unlinked, renamed
// away, replaced), checked against kernel overlayfs over the same lower
// tree: what overlayfs answers is the reference, not a hard-coded list.

// openImage is a one-layer image of the entries the scripts open, their
// own for each script, so that no script sees another's copy-up.
func openImage(t *testing.T) *testImage {
	return newTestImage(t, func(b *layerBuilder) {
		b.dir("d", 0o755)
		for _, s := range openScripts {
			for _, name := range []string{"a", "b"} {
				b.add(&layerstore.Entry{Path: "d/" + s.name + "." + name, Type: layerstore.TypeReg, Mode: 0o640, UID: 7, GID: 8,
					Size: 6, Digest: writeTestObject(t, b.objects, []byte("hello\n")),
					Xattrs: map[string]string{"user.origin": "lower"}})
			}
			b.add(&layerstore.Entry{Path: "d/" + s.name + ".e", Type: layerstore.TypeDir, Mode: 0o750, UID: 7, GID: 8,
				Xattrs: map[string]string{"user.origin": "lower"}})
			b.dir("d/"+s.name+".s", 0o755).file("d/"+s.name+".s/f", 0o644, "in s\n")
		}
	})
}

// plainLower writes the tree of img into a plain directory, as a lower dir
// for overlayfs.
func plainLower(t *testing.T, img *testImage) string {
	t.Helper()
	dir := t.TempDir()
	err := img.tree.Walk(func(e *layerstore.Entry) error {
		p := filepath.Join(dir, e.Path)
		switch e.Type {
		case layerstore.TypeDir:
			if e.Path != "" {
				if err := os.Mkdir(p, 0o700); err != nil {
					return err
				}
			}
		case layerstore.TypeReg:
			b, err := os.ReadFile(img.objectPath(e.Digest))
			if err != nil {
				return err
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				return err
			}
		case layerstore.TypeSymlink:
			return os.Symlink(e.Link, p)
		default:
			return fmt.Errorf("plainLower: %s: type %s", e.Path, e.Type)
		}
		for k, v := range e.Xattrs {
			if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
				return err
			}
		}
		if err := os.Lchown(p, int(e.UID), int(e.GID)); err != nil {
			return err
		}
		if e.Type != layerstore.TypeSymlink {
			if err := os.Chmod(p, os.FileMode(e.Mode&0o777)|modeBits(e.Mode)); err != nil {
				return err
			}
		}
		ts := nsToTimespec(e.Mtime)
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func modeBits(m uint32) os.FileMode {
	var fm os.FileMode
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// mountOverlay mounts kernel overlayfs of lower with a fresh upper dir, or
// skips where the kernel has none.
func mountOverlay(t *testing.T, lower string) string {
	t.Helper()
	base := t.TempDir()
	mnt, upper, work := filepath.Join(base, "mnt"), filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{mnt, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		if errors.Is(err, unix.ENODEV) {
			t.Skip("the kernel has no overlayfs")
		}
		t.Fatalf("mount overlayfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount overlayfs: %v", err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

// openScript runs steps on entries of a mount of openImage, its own, and
// says what each answered.
type openScript struct {
	name string
	run  func(o *obs, base string) // base+".a", ".b": lower files; ".e": a lower empty directory; ".s": one with a file f
}

// obs records what a script observes, one line per step.
type obs struct {
	lines []string
	// lowerNlink leaves the link count out of fstat: a lower file without
	// an upper copy has no count of its own once unlinked; overlayfs shows
	// the lower file's (1), the kernel's writeback cache the one it
	// dropped at the unlink (0), without asking.
	lowerNlink bool
}

func (o *obs) add(step string, err error) {
	o.lines = append(o.lines, step+": "+errName(err))
}

func (o *obs) addf(format string, args ...any) {
	o.lines = append(o.lines, fmt.Sprintf(format, args...))
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// fstatObs records what fstat of fd says (what overlayfs and strata both
// keep: mode, owner, size, mtime).
func (o *obs) fstat(step string, fd int) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		o.add(step, err)
		return
	}
	mtime := fmt.Sprint(st.Mtim.Sec)
	if now := time.Now().Unix(); st.Mtim.Sec > now-60 && st.Mtim.Sec <= now {
		mtime = "now" // scripts run at different times on the two mounts
	}
	nlink := fmt.Sprint(st.Nlink)
	if o.lowerNlink {
		nlink = "-"
	}
	o.addf("%s: mode %o uid %d gid %d size %d mtime %s nlink %s", step, st.Mode, st.Uid, st.Gid, st.Size, mtime, nlink)
}

func (o *obs) fgetxattr(step string, fd int, name string) {
	buf := make([]byte, 64)
	n, err := unix.Fgetxattr(fd, name, buf)
	if err != nil {
		o.add(step, err)
		return
	}
	o.addf("%s: %q", step, buf[:n])
}

func (o *obs) pread(step string, fd int) {
	buf := make([]byte, 64)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		o.add(step, err)
		return
	}
	o.addf("%s: %q", step, buf[:n])
}

func (o *obs) open(step, p string, flags int) int {
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0)
	o.add(step, err)
	return fd
}

// metaOps changes everything a file descriptor can change, and reads it back.
func metaOps(o *obs, fd int, tag string) {
	o.add(tag+" fchmod", unix.Fchmod(fd, 0o604))
	o.add(tag+" fchown", unix.Fchown(fd, 9, 10))
	o.add(tag+" futimens", unix.UtimesNanoAt(fd, "", []unix.Timespec{{Sec: 1000}, {Sec: 2000}}, unix.AT_EMPTY_PATH))
	o.add(tag+" fsetxattr", unix.Fsetxattr(fd, "user.new", []byte("v"), 0))
	o.add(tag+" fremovexattr", unix.Fremovexattr(fd, "user.origin"))
	o.fgetxattr(tag+" fgetxattr new", fd, "user.new")
	o.fgetxattr(tag+" fgetxattr origin", fd, "user.origin")
	o.fstat(tag+" fstat", fd)
}

var openScripts = []openScript{
	{"dir-rmdir", func(o *obs, base string) {
		e := base + ".e"
		fd := o.open("open e", e, unix.O_RDONLY|unix.O_DIRECTORY)
		o.add("rmdir e", unix.Rmdir(e))
		metaOps(o, fd, "e")
		o.add("close e", unix.Close(fd))
	}},
	{"dir-gone-file-open", func(o *obs, base string) {
		// The file's directory goes and comes back new: the file must not
		// come back in it.
		dir := base + ".s"
		o.lowerNlink = true
		fd := o.open("open s/f", dir+"/f", unix.O_RDONLY)
		o.add("rm -r s", os.RemoveAll(dir))
		o.add("mkdir s", unix.Mkdir(dir, 0o700))
		metaOps(o, fd, "old f")
		o.add("close old f", unix.Close(fd))
		ents, err := os.ReadDir(dir)
		o.addf("list new s: %d entries, %s", len(ents), errName(err))
	}},
	{"tmpfile-opath", func(o *obs, base string) {
		// An O_TMPFILE file whose last open handle goes while an O_PATH
		// descriptor still holds it, then linked into place.
		fd := o.open("open O_TMPFILE", filepath.Dir(base), unix.O_TMPFILE|unix.O_RDWR)
		_, err := unix.Write(fd, []byte("tmp\n"))
		o.add("write", err)
		p := o.open("open O_PATH", fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_PATH)
		o.add("close", unix.Close(fd))
		o.fstat("fstat O_PATH", p)
		o.add("link", unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", p), unix.AT_FDCWD, base+".linked", unix.AT_SYMLINK_FOLLOW))
		o.add("close O_PATH", unix.Close(p))
		b, err := os.ReadFile(base + ".linked")
		o.addf("read linked: %q %s", b, errName(err))
	}},
	{"ro-unlink-recreate", func(o *obs, base string) {
		a := base + ".a"
		o.lowerNlink = true
		fd := o.open("open a O_RDONLY", a, unix.O_RDONLY)
		o.add("unlink a", unix.Unlink(a))
		o.add("create a", os.WriteFile(a, []byte("new a\n"), 0o600))
		metaOps(o, fd, "old a")
		o.pread("read old a", fd)
		o.add("close old a", unix.Close(fd))
		fd = o.open("open new a", a, unix.O_RDONLY)
		o.fstat("new a fstat", fd)
		o.pread("read new a", fd)
		o.add("close new a", unix.Close(fd))
	}},
	{"new-dir-rmdir", func(o *obs, base string) {
		e := base + ".new"
		o.add("mkdir new", unix.Mkdir(e, 0o700))
		fd := o.open("open new", e, unix.O_RDONLY|unix.O_DIRECTORY)
		o.add("rmdir new", unix.Rmdir(e))
		metaOps(o, fd, "new")
		o.add("close new", unix.Close(fd))
	}},
	{"new-unlink", func(o *obs, base string) {
		p := base + ".new"
		o.add("create new", os.WriteFile(p, []byte("new file\n"), 0o644))
		ro := o.open("open new O_RDONLY", p, unix.O_RDONLY)
		o.add("unlink new", unix.Unlink(p))
		metaOps(o, ro, "new")
		rw := o.open("reopen new O_RDWR", fmt.Sprintf("/proc/self/fd/%d", ro), unix.O_RDWR)
		_, err := unix.Pwrite(rw, []byte("NEW"), 0)
		o.add("write new", err)
		o.add("close rw", unix.Close(rw))
		o.pread("read new", ro)
		o.fstat("fstat new", ro)
		o.add("close ro", unix.Close(ro))
	}},
	{"ro-write-elsewhere-unlink", func(o *obs, base string) {
		// A lower file copied up by a write through another name... of
		// the same file: a read-only handle opened before the copy-up.
		a := base + ".a"
		ro := o.open("open a O_RDONLY", a, unix.O_RDONLY)
		o.add("write a", os.WriteFile(a, []byte("HE"), 0))
		o.add("unlink a", unix.Unlink(a))
		metaOps(o, ro, "a")
		o.pread("read a", ro)
		o.add("close a", unix.Close(ro))
	}},
	{"ro-unlink", func(o *obs, base string) {
		a := base + ".a"
		o.lowerNlink = true
		fd := o.open("open a O_RDONLY", a, unix.O_RDONLY)
		o.add("unlink a", unix.Unlink(a))
		metaOps(o, fd, "a")
		o.add("ftruncate a", unix.Ftruncate(fd, 2))
		o.pread("read a", fd)
		rw := o.open("reopen a O_RDWR", fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDWR)
		if rw >= 0 {
			unix.Close(rw)
		}
		o.add("close a", unix.Close(fd))
	}},
	{"rw-unlink", func(o *obs, base string) {
		a := base + ".a"
		fd := o.open("open a O_RDWR", a, unix.O_RDWR)
		o.add("unlink a", unix.Unlink(a))
		metaOps(o, fd, "a")
		o.add("ftruncate a", unix.Ftruncate(fd, 3))
		_, err := unix.Pwrite(fd, []byte("HE"), 0)
		o.add("write a", err)
		o.pread("read a", fd)
		o.fstat("fstat a", fd)
		o.add("close a", unix.Close(fd))
	}},
	{"rw-write-unlink-close", func(o *obs, base string) {
		a := base + ".a"
		// The writeback cache flushes the mtime of the write at close.
		fd := o.open("open a O_RDWR", a, unix.O_RDWR)
		_, err := unix.Pwrite(fd, []byte("HE"), 0)
		o.add("write a", err)
		o.add("unlink a", unix.Unlink(a))
		_, err = unix.Pwrite(fd, []byte("LL"), 2)
		o.add("write a", err)
		o.add("close a", unix.Close(fd))
	}},
	{"rw-and-ro-unlink", func(o *obs, base string) {
		a := base + ".a"
		// The read-write handle goes first; the read-only one stays.
		rw := o.open("open a O_RDWR", a, unix.O_RDWR)
		ro := o.open("open a O_RDONLY", a, unix.O_RDONLY)
		_, err := unix.Pwrite(rw, []byte("HE"), 0)
		o.add("write a", err)
		o.add("unlink a", unix.Unlink(a))
		o.add("close rw", unix.Close(rw))
		metaOps(o, ro, "ro")
		o.pread("read ro", ro)
		o.add("close ro", unix.Close(ro))
	}},
	{"ro-rename", func(o *obs, base string) {
		a := base + ".a"
		fd := o.open("open a O_RDONLY", a, unix.O_RDONLY)
		o.add("rename a to a.moved", unix.Rename(a, a+".moved"))
		metaOps(o, fd, "a")
		o.pread("read a", fd)
		o.add("close a", unix.Close(fd))
	}},
	{"rw-rename", func(o *obs, base string) {
		a := base + ".a"
		fd := o.open("open a O_RDWR", a, unix.O_RDWR)
		o.add("rename a to a.moved", unix.Rename(a, a+".moved"))
		metaOps(o, fd, "a")
		o.add("ftruncate a", unix.Ftruncate(fd, 3))
		o.pread("read a", fd)
		o.add("close a", unix.Close(fd))
	}},
	{"ro-replaced", func(o *obs, base string) {
		a, b := base+".a", base+".b"
		// b is open when a is renamed over it.
		o.lowerNlink = true
		fd := o.open("open b O_RDONLY", b, unix.O_RDONLY)
		o.add("rename a over b", unix.Rename(a, b))
		metaOps(o, fd, "b")
		o.pread("read b", fd)
		o.add("close b", unix.Close(fd))
	}},
	{"rw-replaced", func(o *obs, base string) {
		a, b := base+".a", base+".b"
		fd := o.open("open b O_RDWR", b, unix.O_RDWR)
		o.add("rename a over b", unix.Rename(a, b))
		metaOps(o, fd, "b")
		o.add("ftruncate b", unix.Ftruncate(fd, 3))
		o.pread("read b", fd)
		o.add("close b", unix.Close(fd))
	}},
}

func runOpenScripts(t *testing.T, root string) map[string][]string {
	out := map[string][]string{}
	for _, s := range openScripts {
		o := &obs{}
		s.run(o, filepath.Join(root, "d", s.name))
		out[s.name] = o.lines
	}
	return out
}

func TestFS_OpenFiles_Overlayfs(t *testing.T) {
	img := openImage(t)
	want := runOpenScripts(t, mountOverlay(t, plainLower(t, img)))
	for _, wb := range []bool{false, true} {
		t.Run(fmt.Sprintf("writeback=%v", wb), func(t *testing.T) {
			m := mountImage(t, img, mountOpts{writeback: wb})
			got := runOpenScripts(t, m.dir)
			for _, s := range openScripts {
				if g, w := strings.Join(got[s.name], "\n"), strings.Join(want[s.name], "\n"); g != w {
					t.Errorf("%s: strata differs from overlayfs:\nstrata:\n%s\noverlayfs:\n%s", s.name, g, w)
				}
			}
		})
	}
}

// TestFS_OpenFiles_RemovedDirReplaced: a change through a descriptor of a
// removed lower directory, when a new directory has been made at its path,
// fails and leaves the new directory as it was. Overlayfs is no reference
// here: it copies the removed directory up over the new one (the new one
// is gone once the dentry cache is), so the expected state is the new
// directory's own, read before the change.
func TestFS_OpenFiles_RemovedDirReplaced(t *testing.T) {
	img := openImage(t)
	for _, wb := range []bool{false, true} {
		t.Run(fmt.Sprintf("writeback=%v", wb), func(t *testing.T) {
			m := mountImage(t, img, mountOpts{writeback: wb})
			e := m.p("d/ro-unlink.e")
			old, err := unix.Open(e, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(old)
			if err := unix.Rmdir(e); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mkdir(e, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := unix.Setxattr(e, "user.mark", []byte("new"), 0); err != nil {
				t.Fatal(err)
			}
			state := func() string {
				var st unix.Statx_t
				if err := unix.Statx(unix.AT_FDCWD, e, unix.AT_STATX_FORCE_SYNC, unix.STATX_BASIC_STATS, &st); err != nil {
					return err.Error()
				}
				names, err := listxattr(e)
				return fmt.Sprintf("mode %o uid %d gid %d mtime %d.%d ino %d xattrs %v %v", st.Mode, st.Uid, st.Gid,
					st.Mtime.Sec, st.Mtime.Nsec, st.Ino, names, err)
			}
			want := state()
			o := &obs{}
			metaOps(o, old, "old e")
			for _, l := range o.lines {
				if strings.HasSuffix(l, ": ok") {
					t.Errorf("%s: a change to the removed directory went through", l)
				}
			}
			if got := state(); got != want {
				t.Errorf("the new directory changed:\n got %s\nwant %s", got, want)
			}
			if v, err := getxattr(e, "user.mark"); err != nil || string(v) != "new" {
				t.Errorf("user.mark of the new directory: %q, %v", v, err)
			}
			if err := os.WriteFile(filepath.Join(e, "x"), nil, 0o644); err != nil {
				t.Errorf("a file in the new directory: %v", err)
			}
		})
	}
}
