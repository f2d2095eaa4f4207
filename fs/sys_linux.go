package fs

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Thin wrappers over the system calls the package uses, with EINTR retried
// and errors left as errnos (wrapped by callers where a name helps).

func fstat(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(fd, &st)
	return st, err
}

// The xattr calls below take a descriptor of the entry: an open file, or an
// O_PATH descriptor, which the f* calls refuse (EBADF) on the kernels this
// runs on; for those they go through /proc/self/fd, which reaches the entry
// itself, a symlink included.

// fgetxattr reads attribute name of the entry open as fd.
func fgetxattr(fd int, name string) ([]byte, error) {
	return readXattr(func(buf []byte) (int, error) {
		n, err := unix.Fgetxattr(fd, name, buf)
		if err == unix.EBADF {
			n, err = unix.Getxattr(procPath(fd), name, buf)
		}
		return n, err
	})
}

// flistxattr lists the attribute names of the entry open as fd.
func flistxattr(fd int) ([]string, error) {
	return listNames(func(b []byte) (int, error) {
		n, err := unix.Flistxattr(fd, b)
		if err == unix.EBADF {
			n, err = unix.Listxattr(procPath(fd), b)
		}
		return n, err
	})
}

func fsetxattr(fd int, name string, v []byte, flags int) error {
	err := unix.Fsetxattr(fd, name, v, flags)
	if err == unix.EBADF {
		err = unix.Setxattr(procPath(fd), name, v, flags)
	}
	return err
}

func fremovexattr(fd int, name string) error {
	err := unix.Fremovexattr(fd, name)
	if err == unix.EBADF {
		err = unix.Removexattr(procPath(fd), name)
	}
	return err
}

// noFchmodat2 is set once fchmodat2 failed as missing (Linux < 6.6) or
// filtered (a seccomp profile's EPERM): chmod of an O_PATH descriptor then
// goes straight to /proc.
var noFchmodat2 atomic.Bool

// fchmodFd changes the mode of the file open as fd, an O_PATH descriptor
// too: fchmod first (EBADF: an O_PATH descriptor), then fchmodat2 with
// AT_EMPTY_PATH (Linux 6.6), where chmod of its /proc/self/fd path costs a
// walk of procfs. Any fchmodat2 failure is retried through /proc, whose
// answer is the one returned.
func fchmodFd(fd int, mode uint32) error {
	err := unix.Fchmod(fd, mode)
	if err != unix.EBADF {
		return err
	}
	if !noFchmodat2.Load() {
		err = unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
		if err == nil {
			return nil
		}
		if err == unix.ENOSYS || err == unix.EOPNOTSUPP || err == unix.EPERM || err == unix.EINVAL {
			noFchmodat2.Store(true)
		}
	}
	return unix.Chmod(procPath(fd), mode)
}

// readXattr calls get with a buffer that grows until the value fits (it
// may grow between the size query and the read).
func readXattr(get func(buf []byte) (int, error)) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := get(buf)
		if err == unix.ERANGE {
			sz, err := get(nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz+64)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func listNames(list func([]byte) (int, error)) ([]string, error) {
	buf := make([]byte, 1024)
	for {
		n, err := list(buf)
		if err == unix.ERANGE {
			sz, err := list(nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz+256)
			continue
		}
		if err != nil {
			if err == unix.ENOTSUP {
				return nil, nil
			}
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

// xattrReply answers a getxattr or listxattr request from a value: the size
// when dest is empty, ERANGE when it is too small.
func xattrReply(v []byte, dest []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// xattrReplyString is xattrReply of a value in the tree's memory.
func xattrReplyString(v string, dest []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// futimes sets atime and mtime (omit one with unix.UTIME_OMIT as Nsec) of
// the entry open as fd, an O_PATH descriptor too.
func futimes(fd int, atime, mtime unix.Timespec) error {
	return unix.UtimesNanoAt(fd, "", []unix.Timespec{atime, mtime}, unix.AT_EMPTY_PATH)
}

func nsToTimespec(ns int64) unix.Timespec { return unix.NsecToTimespec(ns) }

// dirent is one entry of a directory as getdents returns it.
type rawDirent struct {
	ino  uint64
	typ  uint8
	name string
}

// readDirents reads every entry but "." and ".." of directory name in
// dirfd.
func readDirents(dirfd int, name string) ([]rawDirent, error) {
	fd, err := openReadDir(dirfd, name)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []rawDirent
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		b := buf[:n]
		for len(b) >= 19 {
			ino := binary.NativeEndian.Uint64(b[0:8])
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return nil, unix.EIO
			}
			typ := b[18]
			name := b[19:reclen]
			if i := indexZero(name); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				out = append(out, rawDirent{ino: ino, typ: typ, name: s})
			}
			b = b[reclen:]
		}
	}
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// openObject opens an object file read-only, without updating its atime
// where the kernel lets us.
func openObject(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOATIME|unix.O_NOFOLLOW, 0)
	if err == unix.EPERM {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// copyContent copies the size bytes of src into the first size bytes of
// dst, a sparse placeholder at least that long: a reflink where the file
// system can (when dst is exactly that long: a clone replaces everything),
// else copy_file_range over the data extents of src only, so holes stay
// holes.
func copyContent(dst, src *os.File, size int64) error {
	if size == 0 {
		return nil
	}
	if st, err := fstat(int(dst.Fd())); err == nil && st.Size == size {
		if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err == nil {
			return nil
		}
	}
	var off int64
	for off < size {
		data, err := unix.Seek(int(src.Fd()), off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			return nil // only a hole is left
		}
		if err != nil {
			data = off // no SEEK_DATA: copy everything
		}
		hole, err := unix.Seek(int(src.Fd()), data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if err := copyRange(dst, src, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// copyRange copies n bytes at off from src to dst at the same offset.
func copyRange(dst, src *os.File, off, n int64) error {
	in, out := off, off
	for n > 0 {
		c, err := unix.CopyFileRange(int(src.Fd()), &in, int(dst.Fd()), &out, int(min(n, 1<<30)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return copyRangeRW(dst, src, in, n)
			}
			return err
		}
		if c == 0 {
			return io.ErrUnexpectedEOF
		}
		n -= int64(c)
	}
	return nil
}

func copyRangeRW(dst, src *os.File, off, n int64) error {
	w := io.NewOffsetWriter(dst, off)
	c, err := io.Copy(w, io.NewSectionReader(src, off, n))
	if err == nil && c != n {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// mkdev encodes a device number the way FUSE's 32-bit rdev carries it.
func mkdev(major, minor uint32) uint32 { return uint32(unix.Mkdev(major, minor)) }
