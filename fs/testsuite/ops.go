package testsuite

// Operation scripts: each named script is a list of steps applied both to a
// plain copy of the fixture rootfs (cp -a, on the host file system: the
// reference answer) and to a mount of the fixture image. After every step
// the two trees must be equal (treecmp, inode numbers aside), the step must
// fail with the same errno or succeed on both, and whatever it observed
// (file contents, seek offsets, lock owners, …) must be the same.
//
// Every path is opened with O_NOFOLLOW and O_NONBLOCK: the rootfs has an
// absolute symlink to /bin/busybox, which a step must never follow out of
// the tree, and a fifo, which must never block a step. Device nodes are
// created, never opened.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/internal/treecmp"
	"github.com/strata-dev/strata/layerstore"
)

// suiteStep is one operation. do applies it under root and returns what it
// observed (compared between the reference and the mount) and its error
// (compared by errno).
type suiteStep struct {
	name string
	do   func(root string) (string, error)
}

type suiteScript struct {
	name  string
	steps []suiteStep
}

const mib = 1 << 20

// suiteScripts is the table of scripts. Paths are those of the fixture image.
var suiteScripts = []suiteScript{
	{"write lower file", []suiteStep{
		opWrite("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
		opRead("etc/passwd"),
		opPwrite("etc/group", 2, "XX"),
		opRead("etc/group"),
	}},
	{"append to lower file keeps its xattr and mode", []suiteStep{
		opAppend("etc/motd", "more\n"),
		opRead("etc/motd"),
		opGetxattr("etc/motd", "user.origin"),
	}},
	{"truncate", []suiteStep{
		opTruncate("usr/share/doc/demo/README", 5),
		opTruncate("usr/share/doc/demo/README", 100),
		opRead("usr/share/doc/demo/README"),
		opTruncate("app/blob-copy.bin", 1000),
		opTruncate("etc/nonexistent", 0),
		opTruncate("etc", 0),
	}},
	{"write to one name of a lower hard-link set", []suiteStep{
		opPwrite("bin/sh", 0, "#!"),
		opRead("bin/cat"),
		opTruncate("bin/ls", 4096),
		opStat("bin/wc"),
	}},
	{"chmod", []suiteStep{
		opChmod("usr/bin/suidtool", 0o700),
		opChmod("etc", 0o700),
		opChmod("tmp", 0o755),
		opChmod("app/data/only", 0o2755),
		opChmod("home/user/notes.txt", 0o1600),
		opChmod("nonexistent", 0o644),
	}},
	{"chown", []suiteStep{
		opChown("home/user/notes.txt", 0, 0),
		opChown("home/user", 2000, 3000),
		opChown("usr/bin/awk", 5, 6), // the symlink itself
		opChown("dev/null", 7, 7),
		opChown("usr/bin/suidtool", 0, 0), // clears setuid, even for root
		opChown("etc/motd", 1, 1),
		opGetxattr("etc/motd", "user.origin"),
	}},
	{"utimes", []suiteStep{
		opUtimes("etc/passwd", 1_000_000_000),
		opUtimes("usr/share", 1_100_000_000),
		opUtimes("usr/bin/awk", 1_200_000_000),
		opUtimes("var/log/pipe", 1_300_000_000),
		opTouchNow("etc/group"),
	}},
	{"xattrs", []suiteStep{
		opSetxattr("etc/passwd", "user.new", "1", 0),
		opSetxattr("etc/motd", "user.origin", "changed", unix.XATTR_REPLACE),
		opSetxattr("etc/motd", "user.origin", "again", unix.XATTR_CREATE),
		opSetxattr("etc/group", "user.missing", "x", unix.XATTR_REPLACE),
		opSetxattr("app", "user.dir", "d", 0),
		opSetxattr("usr/bin/awk", "trusted.link", "l", 0),
		opSetxattr("usr/bin/awk", "user.link", "l", 0),
		opSetxattr("etc/passwd", "trusted.t", strings.Repeat("v", 3000), 0),
		opListxattr("etc/motd"),
		opListxattr("etc/passwd"),
		opRemovexattr("etc/motd", "user.origin"),
		opRemovexattr("etc/motd", "user.origin"),
		opListxattr("etc/motd"),
		opGetxattr("etc/group", "user.none"),
	}},
	{"mkdir and rmdir", []suiteStep{
		opMkdir("newdir", 0o750),
		opMkdir("newdir/sub", 0o700),
		opMkdir("etc", 0o755),
		opMkdir("nonexistent/sub", 0o755),
		opRmdir("newdir"),
		opRmdir("newdir/sub"),
		opRmdir("newdir"),
		opRmdir("app"),
		opRmdir("root"),
		opRmdir("etc/passwd"),
		opMkdir("root", 0o700),
		opReaddir("root"),
	}},
	{"unlink", []suiteStep{
		opUnlink("etc/group"),
		opUnlink("etc/group"),
		opUnlink("etc"),
		opUnlink("bin/cat"),
		opStat("bin/busybox"),
		opUnlink("usr/bin/awk"),
		opUnlink("var/log/pipe"),
		opUnlink("dev/null"),
		opReaddir("etc"),
	}},
	{"rename file over existing", []suiteStep{
		opRename("etc/group", "etc/passwd"),
		opRead("etc/passwd"),
		opRename("etc/motd", "home/user/notes.txt"),
		opRename("etc/nonexistent", "etc/x"),
		opRename("etc/passwd", "etc"),
		opRename("app", "etc/passwd"),
		opRename("bin/sh", "app/sh"),
		opStat("app/sh"),
	}},
	{"rename lower dir", []suiteStep{
		opRename("app/data", "app/data2"),
		opReaddir("app/data2"),
		opRead("app/data2/only"),
		opRename("usr/share", "share-moved"),
		opRead("share-moved/doc/demo/README"),
		opMkdir("share-moved/new", 0o755),
		opRename("app/bin", "root"), // over an empty lower dir
		opRename("app", "etc"),      // over a non-empty dir
		opRename("usr", "usr/bin/x"),
		opRename("home", "home2"),
		opWrite("home2/user/notes.txt", "moved\n"),
		opMkdir("home", 0o755),
		opReaddir("home"),
	}},
	{"rename noreplace", []suiteStep{
		opRenameat2("etc/group", "etc/passwd", unix.RENAME_NOREPLACE),
		opRenameat2("etc/group", "etc/group2", unix.RENAME_NOREPLACE),
		opRenameat2("app/data", "etc", unix.RENAME_NOREPLACE),
		opRenameat2("app/data", "app/data3", unix.RENAME_NOREPLACE),
	}},
	{"rename exchange", []suiteStep{
		opRenameat2("etc/passwd", "etc/group", unix.RENAME_EXCHANGE),
		opRead("etc/group"),
		opRenameat2("app/bin", "etc/motd", unix.RENAME_EXCHANGE),
		opReaddir("etc/motd"),
		opRenameat2("etc/passwd", "etc/nonexistent", unix.RENAME_EXCHANGE),
		opRenameat2("home/user", "usr/share/doc", unix.RENAME_EXCHANGE),
	}},
	{"symlink", []suiteStep{
		opSymlink("../etc/passwd", "tmp/pw"),
		opReadlink("tmp/pw"),
		opSymlink("x", "etc/passwd"),
		opSymlink(strings.Repeat("a/", 500), "tmp/long"),
		opReadlink("usr/bin/awk"),
		opReadlink("etc/passwd"),
	}},
	{"hard link to a lower file", []suiteStep{
		opLink("home/user/notes.txt", "tmp/notes-link"),
		opAppend("tmp/notes-link", "via link\n"),
		opRead("home/user/notes.txt"),
		opChmod("home/user/notes.txt", 0o640),
		opStat("tmp/notes-link"),
		opLink("etc/motd", "etc/motd2"),
		opSetxattr("etc/motd2", "user.via", "2", 0),
		opGetxattr("etc/motd", "user.via"),
		opLink("etc/passwd", "etc/group"),
		opLink("etc", "etc2"),
		opLink("bin/busybox", "app/bb"),
		opStat("bin/sh"),
		opUnlink("etc/motd"),
		opRead("etc/motd2"),
	}},
	{"link then unlink the original", []suiteStep{
		opLink("etc/passwd", "etc/passwd.bak"),
		opUnlink("etc/passwd"),
		opRead("etc/passwd.bak"),
		opStat("etc/passwd.bak"),
	}},
	{"mknod", []suiteStep{
		opMkfifo("tmp/fifo", 0o640),
		opMknod("tmp/zero", unix.S_IFCHR|0o666, 1, 5),
		opMknod("tmp/blk", unix.S_IFBLK|0o600, 250, 7),
		opMkfifo("etc/passwd", 0o600),
		opStat("tmp/zero"),
	}},
	{"fallocate and punch hole", []suiteStep{
		opFallocate("etc/group", 0, 0, 10000),
		opFallocate("app/blob-copy.bin", unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 8192),
		opFallocate("etc/passwd", unix.FALLOC_FL_KEEP_SIZE, 0, 1*mib),
		opStat("etc/passwd"),
		opFallocate("etc/motd", unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 3),
		opRead("etc/motd"),
	}},
	{"whiteout then recreate", []suiteStep{
		opUnlink("etc/motd"),
		opReaddir("etc"),
		opWrite("etc/motd", "new motd\n"),
		opListxattr("etc/motd"),
		opUnlink("bin/sleep"), // already whited out in the image
		opWrite("bin/sleep", "x"),
		opRmAll("app/data"),
		opWrite("app/data", "now a file"),
		opUnlink("usr/bin/awk"),
		opMkdir("usr/bin/awk", 0o755),
	}},
	{"rm -r then mkdir comes back empty", []suiteStep{
		opRmAll("usr/share/doc"),
		opMkdir("usr/share/doc", 0o755),
		opReaddir("usr/share/doc"),
		opMkdir("usr/share/doc/demo", 0o755),
		opReaddir("usr/share/doc/demo"),
		opRmAll("bin"),
		opMkdir("bin", 0o755),
		opReaddir("bin"),
		opWrite("bin/sh", "new\n"),
		opStat("bin/sh"),
		opRmAll("app"),
		opMkdir("app", 0o700),
		opMkdir("app/data", 0o700),
		opReaddir("app/data"),
	}},
	{"sparse file and SEEK_DATA/SEEK_HOLE", []suiteStep{
		opPwrite("tmp/sparse", 1*mib, "x"),
		opSeek("tmp/sparse"),
		opPwrite("tmp/sparse", 4*mib, "y"),
		opTruncate("tmp/sparse", 8*mib),
		opSeek("tmp/sparse"),
		opPwrite("etc/passwd", 2*mib, "z"),
		opSeek("etc/passwd"),
	}},
	{"mmap shared write", []suiteStep{
		opMmapWrite("etc/passwd", 5, "MMAP"),
		opRead("etc/passwd"),
		opWrite("tmp/m", strings.Repeat(".", 8192)),
		opMmapWrite("tmp/m", 4096, "page two"),
		opRead("tmp/m"),
		opMmapWrite("app/blob-copy.bin", 3*mib, "deep"),
	}},
	{"flock and fcntl locks", []suiteStep{
		opFlock("etc/passwd"),
		opFcntlLock("etc/group"),
		opFlock("tmp"),
	}},
	{"read-only handle sees later writes", []suiteStep{
		opReadThenWrite("etc/passwd"),
		opReadThenWrite("home/user/notes.txt"),
	}},
	{"read-only handle of a large lower file sees later writes", []suiteStep{
		opReadThenWrite("app/blob-copy.bin"), // big enough for passthrough
		opReadThenWrite("bin/sh"),            // and one of a hard-link set
	}},
	{"create exclusive and open flags", []suiteStep{
		opCreateExcl("etc/passwd"),
		opCreateExcl("etc/newfile"),
		opOpen("etc/passwd", unix.O_WRONLY|unix.O_TRUNC),
		opOpen("etc", unix.O_WRONLY),
		opOpen("etc/passwd", unix.O_RDONLY|unix.O_DIRECTORY),
		opOpen("usr/bin/awk", unix.O_RDONLY),
		opOpen("etc/passwd/x", unix.O_RDONLY),
	}},
}

// testOps runs every script against a fresh mount and a fresh copy of
// the reference rootfs, with and without FUSE passthrough.
func (ts *suite) testOps(t *testing.T) {
	img := ts.demo
	modes := []struct {
		name string
		o    suiteMountOptions
	}{
		{"plain", suiteMountOptions{}},
		{"passthrough", suiteMountOptions{Passthrough: true}},
		{"writeback", suiteMountOptions{Writeback: true}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			for _, s := range suiteScripts {
				t.Run(s.name, func(t *testing.T) {
					ref := ts.copyRootfs(t)
					m := ts.mountImage(t, img, mode.o)
					start := time.Now().Add(-2 * time.Second)
					for i, st := range s.steps {
						if !suiteRunStep(t, fmt.Sprintf("step %d %s", i+1, st.name), st, ref, m.Dir, start) {
							t.Logf("trees diverged at step %d: the script's later steps are not run", i+1)
							break
						}
					}
				})
			}
		})
	}
}

// suiteRunStep applies one step to the reference and to the mount and
// compares errors, observations and trees. It reports whether the trees
// still agree.
func suiteRunStep(t *testing.T, label string, st suiteStep, ref, mnt string, start time.Time) bool {
	t.Helper()
	refObs, refErr := st.do(ref)
	gotObs, gotErr := st.do(mnt)
	if re, ge := errnoOf(refErr), errnoOf(gotErr); re != ge || (refErr == nil) != (gotErr == nil) {
		t.Errorf("%s: reference: %v, mount: %v", label, errString(refErr), errString(gotErr))
	}
	if refObs != gotObs {
		t.Errorf("%s: reference observed %q, mount observed %q", label, refObs, gotObs)
	}
	if d := suiteCompareTrees(t, ref, mnt, start); len(d) > 0 {
		suiteDiffs(t, label+": reference copy vs mount", d)
		return false
	}
	return true
}

// suiteCompareTrees compares the reference dir with the mount. Times the
// kernel set during the test (after start) are all treated as one value
// "now", as the two file systems cannot agree on them to the nanosecond;
// every other mtime (from the image or set with utimes) must be equal.
func suiteCompareTrees(t *testing.T, ref, mnt string, start time.Time) []string {
	t.Helper()
	opt := treecmp.Options{IgnoreInodes: true}
	a, b := suiteSnapshot(t, ref, opt), suiteSnapshot(t, mnt, opt)
	for _, tr := range []*treecmp.Tree{a, b} {
		for _, n := range tr.Nodes {
			if n.Mtime >= start.UnixNano() {
				n.Mtime = -1
			}
		}
	}
	return treecmp.Compare(a, b, opt)
}

func errnoOf(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	if e := errnoOf(err); e != 0 {
		return fmt.Sprintf("%v (%s)", err, unix.ErrnoName(e))
	}
	return err.Error()
}

// The operations. Paths are relative to the root a step is applied under.

func openFlags(p string, flags int, mode uint32) (*os.File, error) {
	fd, err := unix.Open(p, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

func opWrite(p, data string) suiteStep {
	return suiteStep{"write " + p, func(root string) (string, error) {
		f, err := openFlags(filepath.Join(root, p), unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644)
		if err != nil {
			return "", err
		}
		_, err = f.WriteString(data)
		return "", errors.Join(err, f.Close())
	}}
}

func opAppend(p, data string) suiteStep {
	return suiteStep{"append " + p, func(root string) (string, error) {
		f, err := openFlags(filepath.Join(root, p), unix.O_WRONLY|unix.O_APPEND, 0)
		if err != nil {
			return "", err
		}
		_, err = f.WriteString(data)
		return "", errors.Join(err, f.Close())
	}}
}

func opPwrite(p string, off int64, data string) suiteStep {
	return suiteStep{fmt.Sprintf("pwrite %s@%d", p, off), func(root string) (string, error) {
		f, err := openFlags(filepath.Join(root, p), unix.O_WRONLY|unix.O_CREAT, 0o644)
		if err != nil {
			return "", err
		}
		_, err = f.WriteAt([]byte(data), off)
		return "", errors.Join(err, f.Close())
	}}
}

// opRead observes a file's content (its sha256 when long).
func opRead(p string) suiteStep {
	return suiteStep{"read " + p, func(root string) (string, error) {
		s, err := suiteReadFile(filepath.Join(root, p))
		if len(s) > 256 {
			s = fmt.Sprintf("%d bytes sha256 %x", len(s), sha256.Sum256([]byte(s)))
		}
		return s, err
	}}
}

// opStat observes what lstat says of p (type, mode, nlink, owner, size).
func opStat(p string) suiteStep {
	return suiteStep{"lstat " + p, func(root string) (string, error) {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			return "", err
		}
		return fmt.Sprintf("mode %o nlink %d owner %d:%d size %d rdev %d,%d",
			st.Mode, st.Nlink, st.Uid, st.Gid, st.Size, unix.Major(st.Rdev), unix.Minor(st.Rdev)), nil
	}}
}

// errSymlink is what a step that would follow a symlink returns instead.
var errSymlink = errors.New("refusing to follow a symlink")

// noFollow returns errSymlink when full is a symlink: truncate(2) and
// chmod(2) follow them, maybe out of the tree.
func noFollow(full string) error {
	var st unix.Stat_t
	if unix.Lstat(full, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return errSymlink
	}
	return nil
}

func opTruncate(p string, size int64) suiteStep {
	return suiteStep{fmt.Sprintf("truncate %s %d", p, size), func(root string) (string, error) {
		full := filepath.Join(root, p)
		if err := noFollow(full); err != nil {
			return "", err
		}
		return "", unix.Truncate(full, size)
	}}
}

func opChmod(p string, mode uint32) suiteStep {
	return suiteStep{fmt.Sprintf("chmod %04o %s", mode, p), func(root string) (string, error) {
		full := filepath.Join(root, p)
		if err := noFollow(full); err != nil {
			return "", err
		}
		return "", unix.Chmod(full, mode)
	}}
}

func opChown(p string, uid, gid int) suiteStep {
	return suiteStep{fmt.Sprintf("lchown %d:%d %s", uid, gid, p), func(root string) (string, error) {
		return "", unix.Lchown(filepath.Join(root, p), uid, gid)
	}}
}

func opUtimes(p string, sec int64) suiteStep {
	return suiteStep{fmt.Sprintf("utimes %s %d", p, sec), func(root string) (string, error) {
		ts := []unix.Timespec{{Sec: sec, Nsec: 5}, {Sec: sec, Nsec: 123456789}}
		return "", unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, p), ts, unix.AT_SYMLINK_NOFOLLOW)
	}}
}

func opTouchNow(p string) suiteStep {
	return suiteStep{"touch " + p, func(root string) (string, error) {
		return "", unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, p), nil, unix.AT_SYMLINK_NOFOLLOW)
	}}
}

func opSetxattr(p, name, value string, flags int) suiteStep {
	return suiteStep{fmt.Sprintf("setxattr %s %s flags %d", p, name, flags), func(root string) (string, error) {
		return "", unix.Lsetxattr(filepath.Join(root, p), name, []byte(value), flags)
	}}
}

func opRemovexattr(p, name string) suiteStep {
	return suiteStep{"removexattr " + p + " " + name, func(root string) (string, error) {
		return "", unix.Lremovexattr(filepath.Join(root, p), name)
	}}
}

func opGetxattr(p, name string) suiteStep {
	return suiteStep{"getxattr " + p + " " + name, func(root string) (string, error) {
		buf := make([]byte, 64<<10)
		n, err := unix.Lgetxattr(filepath.Join(root, p), name, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}}
}

// opListxattr observes the sorted names llistxattr returns, without the
// security.selinux label a host may add.
func opListxattr(p string) suiteStep {
	return suiteStep{"listxattr " + p, func(root string) (string, error) {
		buf := make([]byte, 64<<10)
		n, err := unix.Llistxattr(filepath.Join(root, p), buf)
		if err != nil {
			return "", err
		}
		var names []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 && string(b) != "security.selinux" {
				names = append(names, string(b))
			}
		}
		slices.Sort(names)
		return strings.Join(names, ","), nil
	}}
}

func opMkdir(p string, mode uint32) suiteStep {
	return suiteStep{fmt.Sprintf("mkdir %s %04o", p, mode), func(root string) (string, error) {
		return "", unix.Mkdir(filepath.Join(root, p), mode)
	}}
}

func opRmdir(p string) suiteStep {
	return suiteStep{"rmdir " + p, func(root string) (string, error) {
		return "", unix.Rmdir(filepath.Join(root, p))
	}}
}

func opUnlink(p string) suiteStep {
	return suiteStep{"unlink " + p, func(root string) (string, error) {
		return "", unix.Unlink(filepath.Join(root, p))
	}}
}

func opRmAll(p string) suiteStep {
	return suiteStep{"rm -r " + p, func(root string) (string, error) {
		return "", os.RemoveAll(filepath.Join(root, p))
	}}
}

func opRename(a, b string) suiteStep {
	return suiteStep{"rename " + a + " " + b, func(root string) (string, error) {
		return "", unix.Rename(filepath.Join(root, a), filepath.Join(root, b))
	}}
}

func opRenameat2(a, b string, flags uint) suiteStep {
	name := map[uint]string{unix.RENAME_NOREPLACE: "noreplace", unix.RENAME_EXCHANGE: "exchange"}[flags]
	return suiteStep{"rename " + name + " " + a + " " + b, func(root string) (string, error) {
		return "", unix.Renameat2(unix.AT_FDCWD, filepath.Join(root, a), unix.AT_FDCWD, filepath.Join(root, b), flags)
	}}
}

func opSymlink(target, p string) suiteStep {
	return suiteStep{"symlink " + p, func(root string) (string, error) {
		return "", unix.Symlink(target, filepath.Join(root, p))
	}}
}

func opReadlink(p string) suiteStep {
	return suiteStep{"readlink " + p, func(root string) (string, error) {
		return os.Readlink(filepath.Join(root, p))
	}}
}

func opLink(a, b string) suiteStep {
	return suiteStep{"link " + a + " " + b, func(root string) (string, error) {
		return "", unix.Linkat(unix.AT_FDCWD, filepath.Join(root, a), unix.AT_FDCWD, filepath.Join(root, b), 0)
	}}
}

func opMkfifo(p string, mode uint32) suiteStep {
	return suiteStep{"mkfifo " + p, func(root string) (string, error) {
		if err := unix.Mkfifo(filepath.Join(root, p), mode); err != nil {
			return "", err
		}
		return "", unix.Chmod(filepath.Join(root, p), mode)
	}}
}

func opMknod(p string, mode, major, minor uint32) suiteStep {
	return suiteStep{fmt.Sprintf("mknod %s %o %d,%d", p, mode, major, minor), func(root string) (string, error) {
		if err := unix.Mknod(filepath.Join(root, p), mode, int(unix.Mkdev(major, minor))); err != nil {
			return "", err
		}
		return "", unix.Chmod(filepath.Join(root, p), mode&0o7777)
	}}
}

// opReaddir observes the sorted names in a directory.
func opReaddir(p string) suiteStep {
	return suiteStep{"readdir " + p, func(root string) (string, error) {
		es, err := os.ReadDir(filepath.Join(root, p))
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return strings.Join(names, ","), err
	}}
}

func opFallocate(p string, mode uint32, off, length int64) suiteStep {
	return suiteStep{fmt.Sprintf("fallocate %s mode %#x %d+%d", p, mode, off, length), func(root string) (string, error) {
		f, err := openFlags(filepath.Join(root, p), unix.O_WRONLY, 0)
		if err != nil {
			return "", err
		}
		err = unix.Fallocate(int(f.Fd()), mode, off, length)
		return "", errors.Join(err, f.Close())
	}}
}

// opSeek observes the data and hole regions of a file as SEEK_DATA and
// SEEK_HOLE find them, with a 4 KiB-aligned granularity.
func opSeek(p string) suiteStep {
	return suiteStep{"SEEK_DATA/SEEK_HOLE " + p, func(root string) (string, error) {
		f, err := openFlags(filepath.Join(root, p), unix.O_RDONLY, 0)
		if err != nil {
			return "", err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return "", err
		}
		var regions []string
		for off := int64(0); off < fi.Size(); {
			data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) {
				break
			}
			if err != nil {
				return strings.Join(regions, " "), err
			}
			hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
			if err != nil {
				return strings.Join(regions, " "), err
			}
			regions = append(regions, fmt.Sprintf("data[%d,%d)", data, hole))
			off = hole
		}
		_, err = unix.Seek(int(f.Fd()), fi.Size()+1, unix.SEEK_DATA)
		regions = append(regions, "beyond EOF: "+errString(err))
		return strings.Join(regions, " "), nil
	}}
}

// opMmapWrite writes through a shared mapping of the whole file and reads
// the bytes back through the mapping, in a child process (see
// suiteInChild).
func opMmapWrite(p string, off int, data string) suiteStep {
	return suiteStep{fmt.Sprintf("mmap write %s@%d", p, off), func(root string) (string, error) {
		return suiteInChild(suiteChildOp{Op: "mmap-write", Path: filepath.Join(root, p), Off: off, Data: data})
	}}
}

func mmapWrite(full string, off int, data string) (string, error) {
	f, err := openFlags(full, unix.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return "", err
	}
	copy(mem[off:], data)
	err = unix.Msync(mem, unix.MS_SYNC)
	back := string(mem[off : off+len(data)])
	return back, errors.Join(err, unix.Munmap(mem))
}

// opFlock takes an exclusive flock on one open file description and
// observes what a second one gets with LOCK_NB, before and after unlock.
func opFlock(p string) suiteStep {
	return suiteStep{"flock " + p, func(root string) (string, error) {
		full := filepath.Join(root, p)
		f1, err := openFlags(full, unix.O_RDONLY, 0)
		if err != nil {
			return "", err
		}
		defer f1.Close()
		f2, err := openFlags(full, unix.O_RDONLY, 0)
		if err != nil {
			return "", err
		}
		defer f2.Close()
		if err := unix.Flock(int(f1.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			return "", err
		}
		obs := "second LOCK_SH while held: " + errString(unix.Flock(int(f2.Fd()), unix.LOCK_SH|unix.LOCK_NB))
		if err := unix.Flock(int(f1.Fd()), unix.LOCK_UN); err != nil {
			return obs, err
		}
		obs += "; after unlock: " + errString(unix.Flock(int(f2.Fd()), unix.LOCK_SH|unix.LOCK_NB))
		return obs, nil
	}}
}

// opFcntlLock takes a POSIX write lock on bytes [0,10) and observes what
// F_OFD_GETLK and F_OFD_SETLK on another open file description see.
func opFcntlLock(p string) suiteStep {
	return suiteStep{"fcntl lock " + p, func(root string) (string, error) {
		full := filepath.Join(root, p)
		f1, err := openFlags(full, unix.O_RDWR, 0)
		if err != nil {
			return "", err
		}
		defer f1.Close()
		f2, err := openFlags(full, unix.O_RDWR, 0)
		if err != nil {
			return "", err
		}
		defer f2.Close()
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 0, Len: 10}
		if err := unix.FcntlFlock(f1.Fd(), unix.F_SETLK, &lk); err != nil {
			return "", err
		}
		q := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: 5, Len: 10}
		if err := unix.FcntlFlock(f2.Fd(), unix.F_OFD_GETLK, &q); err != nil {
			return "", err
		}
		obs := fmt.Sprintf("getlk: type %d start %d len %d", q.Type, q.Start, q.Len)
		set := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: 5, Len: 10}
		obs += "; ofd setlk over it: " + errString(unix.FcntlFlock(f2.Fd(), unix.F_OFD_SETLK, &set))
		set = unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: 10, Len: 10}
		obs += "; ofd setlk beside it: " + errString(unix.FcntlFlock(f2.Fd(), unix.F_OFD_SETLK, &set))
		return obs, nil
	}}
}

// opReadThenWrite opens p read-only and reads it, then writes through a
// second, read-write open and reads again through the first: POSIX says the
// first handle sees the write.
func opReadThenWrite(p string) suiteStep {
	return suiteStep{"read-only handle, then write " + p, func(root string) (string, error) {
		full := filepath.Join(root, p)
		ro, err := openFlags(full, unix.O_RDONLY, 0)
		if err != nil {
			return "", err
		}
		defer ro.Close()
		buf := make([]byte, 16)
		n, err := ro.ReadAt(buf, 0)
		if err != nil && err != io.EOF {
			return "", err
		}
		before := string(buf[:n])
		rw, err := openFlags(full, unix.O_RDWR, 0)
		if err != nil {
			return "", err
		}
		if _, err := rw.WriteAt([]byte("WRITTEN"), 0); err != nil {
			rw.Close()
			return "", err
		}
		if err := rw.Close(); err != nil {
			return "", err
		}
		n, err = ro.ReadAt(buf, 0)
		if err != nil && err != io.EOF {
			return "", err
		}
		return fmt.Sprintf("before %q, after %q", before, buf[:n]), nil
	}}
}

func opCreateExcl(p string) suiteStep {
	return suiteStep{"create O_EXCL " + p, func(root string) (string, error) {
		f, err := openFlags(filepath.Join(root, p), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err != nil {
			return "", err
		}
		return "", f.Close()
	}}
}

func opOpen(p string, flags int) suiteStep {
	return suiteStep{fmt.Sprintf("open %s %#o", p, flags), func(root string) (string, error) {
		f, err := openFlags(filepath.Join(root, p), flags, 0)
		if err != nil {
			return "", err
		}
		return "", f.Close()
	}}
}

// suiteTypeOf is the type of p under root, from lstat; 0 when absent.
func suiteTypeOf(full string) layerstore.Type {
	var st unix.Stat_t
	if unix.Lstat(full, &st) != nil {
		return 0
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return layerstore.TypeReg
	case unix.S_IFDIR:
		return layerstore.TypeDir
	case unix.S_IFLNK:
		return layerstore.TypeSymlink
	case unix.S_IFCHR:
		return layerstore.TypeChar
	case unix.S_IFBLK:
		return layerstore.TypeBlock
	case unix.S_IFIFO:
		return layerstore.TypeFifo
	}
	return 0
}

// testPassthroughWriterWhileReading pins down that passthrough keeps no
// writer out: on a writable mount lower files are read through the page
// cache and only the top layer's own files pass through (to the upper
// file), so opening a large lower file for writing while a reader holds it
// works, the reader sees the write, and the object stays untouched.
func (ts *suite) testPassthroughWriterWhileReading(t *testing.T) {
	img := ts.demo
	m := ts.mountImage(t, img, suiteMountOptions{Passthrough: true})
	if !m.Passthrough {
		t.Skip("the kernel refused FUSE passthrough here")
	}
	p := filepath.Join(m.Dir, "app/blob-copy.bin")
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	buf := make([]byte, 7)
	if _, err := ro.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	rw, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("write open while a reader is open: %v", err)
	}
	if _, err := rw.WriteAt([]byte("WRITTEN"), 0); err != nil {
		t.Fatal(err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.ReadAt(buf, 0); err != nil || string(buf) != "WRITTEN" {
		t.Errorf("the reader after the write: %q, %v; want WRITTEN", buf, err)
	}
	m2 := ts.mountImage(t, img, suiteMountOptions{ReadOnly: true, Passthrough: true})
	if got, err := os.ReadFile(filepath.Join(m2.Dir, "app/blob-copy.bin")); err != nil || !bytes.Equal(got, before) {
		t.Errorf("the image's file after the write (another mount): %d bytes, %v; want it unchanged", len(got), err)
	}
}
