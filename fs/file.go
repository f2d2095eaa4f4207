package fs

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// passthroughMinSize is the smallest lower file read with passthrough.
// Smaller files gain little (a cold read is one or two READs, a warm one is
// served from the page cache), and while any passthrough handle of a file is
// open the kernel allows no other kind of open, so nobody could open the
// file for writing: small files are the ones that get written in place
// (configs, logs), large ones (binaries, libraries, data) rarely are.
const passthroughMinSize = 1 << 20

// upperOpenFlags keeps the flags of a FUSE open that mean something to the
// upper file: the access mode, truncation and synchronous writes. The kernel
// computes append offsets itself, and O_DIRECT alignment is the caller's
// business with the kernel, not ours with the upper file system.
func upperOpenFlags(flags uint32) uint32 {
	return flags&(unix.O_ACCMODE|unix.O_TRUNC|unix.O_SYNC|unix.O_DSYNC) | unix.O_CLOEXEC | unix.O_NOFOLLOW
}

var _ = (gofs.NodeOpener)((*node)(nil))

// Open opens a regular file. Reads of data that is still in an object (a
// lower file, or a metacopy) go to the object, opened read-only, with
// passthrough when the kernel allows it. Anything that may write copies the
// data up first and gets a handle on the upper file, which never uses
// passthrough (see the package doc).
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	write := flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0
	if write && u.ro {
		return nil, 0, syscall.EROFS
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if write {
		if n.ptOpen > 0 {
			// The kernel lets an inode with passthrough opens have no
			// other kind of open, and a write handle must never pass
			// through to the object.
			u.log.Info("strata fs: open for writing refused: the file is open read-only with passthrough", "ino", n.ino)
			return nil, 0, syscall.ETXTBSY
		}
		if errno := n.copyUpForWrite(flags&unix.O_TRUNC != 0); errno != 0 {
			return nil, 0, errno
		}
		f, errno := n.openUpper(flags)
		if errno != 0 {
			return nil, 0, errno
		}
		return f, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
	}
	if n.hasUpper() {
		if u.metacopyOf(n.ino) == nil {
			f, errno := n.openUpper(flags)
			if errno != 0 {
				return nil, 0, errno
			}
			return f, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
		}
	}
	e := n.lower
	if m := u.metacopyOf(n.ino); m != nil {
		e = m
	}
	if e == nil {
		return nil, 0, syscall.EIO
	}
	obj, err := u.openObjectOf(e)
	if err != nil {
		u.log.Error("strata fs: cannot read object", "path", e.Path, "digest", e.Digest, "err", err)
		return nil, 0, syscall.EIO
	}
	h := &objectFile{n: n, f: obj}
	if u.passthrough.Load() && e.Size >= passthroughMinSize {
		h.pt = true
		n.ptOpen++
	}
	return h, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

// openUpper opens n's upper file with the flags of a FUSE open. Callers
// hold n.mu.
func (n *node) openUpper(flags uint32) (*upperFile, syscall.Errno) {
	u := n.u
	u.nsMu.RLock()
	defer u.nsMu.RUnlock()
	fl := int(upperOpenFlags(flags))
	var fd int
	p, _, err := u.upperStat(n)
	if err == nil {
		fd, err = unix.Open(u.abs(p), fl, 0)
	} else if afd, ok := n.anyFd(); ok {
		fd, err = unix.Open(fmt.Sprintf("/proc/self/fd/%d", afd), fl&^unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, toErrno(err)
	}
	st, err := fstat(fd)
	if ino, ok := u.knownIno(&st); err != nil || !ok || ino != n.ino {
		unix.Close(fd)
		return nil, syscall.ESTALE
	}
	return newUpperFile(n, fd), 0
}

// objectFile is a read-only handle on the object that holds a lower file's
// data. It is the only handle type that offers passthrough. Once the data is
// copied up (someone opened the file for writing), it reads the upper file,
// so it sees later writes as POSIX wants; a passthrough handle cannot, the
// kernel reads the object itself.
type objectFile struct {
	n  *node
	f  *os.File
	pt bool // counted in n.ptOpen

	mu    sync.Mutex
	upper *upperFile // after copy-up; not registered with the node
}

var (
	_ = (gofs.FilePassthroughFder)((*objectFile)(nil))
	_ = (gofs.FileReader)((*objectFile)(nil))
	_ = (gofs.FileLseeker)((*objectFile)(nil))
	_ = (gofs.FileReleaser)((*objectFile)(nil))
	_ = (gofs.FileFsyncer)((*objectFile)(nil))
	_ = (gofs.FileFlusher)((*objectFile)(nil))
)

// fd returns the descriptor reads go to: the upper file once the data has
// been copied up, else the object.
func (h *objectFile) fd() int {
	n := h.n
	if !n.hasUpper() {
		return int(h.f.Fd())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.upper != nil {
		return h.upper.fd
	}
	if n.u.metacopyOf(n.ino) != nil {
		return int(h.f.Fd())
	}
	n.mu.Lock()
	f, errno := n.openUpper(unix.O_RDONLY)
	n.mu.Unlock()
	if errno != 0 {
		return int(h.f.Fd())
	}
	n.removeFile(f) // a private descriptor of this handle
	h.upper = f
	return f.fd
}

// PassthroughFd lets the kernel read the object itself. The handle is
// read-only, and so is the descriptor.
func (h *objectFile) PassthroughFd() (int, bool) {
	if !h.pt {
		return -1, false
	}
	return int(h.f.Fd()), true
}

func (h *objectFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	// The object's size was checked at open, and objects never change.
	return fuse.ReadResultFd(uintptr(h.fd()), off, len(dest)), 0
}

func (h *objectFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	o, err := unix.Seek(h.fd(), int64(off), int(whence))
	return uint64(o), toErrno(err)
}

func (h *objectFile) Release(ctx context.Context) syscall.Errno {
	if h.pt {
		h.n.mu.Lock()
		h.n.ptOpen--
		h.n.mu.Unlock()
	}
	h.mu.Lock()
	if h.upper != nil {
		unix.Close(h.upper.fd)
	}
	h.mu.Unlock()
	return toErrno(h.f.Close())
}

func (h *objectFile) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }
func (h *objectFile) Flush(ctx context.Context) syscall.Errno               { return 0 }

// upperFile is a handle on a file of the upper dir.
type upperFile struct {
	n  *node
	fd int

	mu     sync.Mutex
	closed bool
}

func newUpperFile(n *node, fd int) *upperFile {
	f := &upperFile{n: n, fd: fd}
	n.addFile(f)
	return f
}

var (
	_ = (gofs.FileReader)((*upperFile)(nil))
	_ = (gofs.FileWriter)((*upperFile)(nil))
	_ = (gofs.FileLseeker)((*upperFile)(nil))
	_ = (gofs.FileReleaser)((*upperFile)(nil))
	_ = (gofs.FileFsyncer)((*upperFile)(nil))
	_ = (gofs.FileFlusher)((*upperFile)(nil))
	_ = (gofs.FileAllocater)((*upperFile)(nil))
)

func (f *upperFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultFd(uintptr(f.fd), off, len(dest)), 0
}

func (f *upperFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	c, err := unix.Pwrite(f.fd, data, off)
	if c < 0 {
		c = 0
	}
	return uint32(c), toErrno(err)
}

func (f *upperFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	o, err := unix.Seek(f.fd, int64(off), int(whence))
	return uint64(o), toErrno(err)
}

func (f *upperFile) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	return toErrno(unix.Fallocate(f.fd, mode, int64(off), int64(size)))
}

func (f *upperFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if flags&1 != 0 {
		return toErrno(unix.Fdatasync(f.fd))
	}
	return toErrno(unix.Fsync(f.fd))
}

func (f *upperFile) Flush(ctx context.Context) syscall.Errno { return 0 }

func (f *upperFile) Release(ctx context.Context) syscall.Errno {
	f.n.removeFile(f)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return syscall.EBADF
	}
	f.closed = true
	return toErrno(unix.Close(f.fd))
}

// handleFd returns the descriptor of an open handle of this package.
func handleFd(h gofs.FileHandle) (int, bool) {
	switch h := h.(type) {
	case *upperFile:
		return h.fd, true
	case *objectFile:
		return int(h.f.Fd()), true
	}
	return -1, false
}

var _ = (gofs.NodeCopyFileRanger)((*node)(nil))

// CopyFileRange copies between two open files of the mount in the kernel:
// from an object or an upper file into an upper file.
func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	in, ok := handleFd(fhIn)
	if !ok {
		return 0, syscall.EBADF
	}
	dst, ok := fhOut.(*upperFile)
	if !ok {
		return 0, syscall.EBADF
	}
	oi, oo := int64(offIn), int64(offOut)
	c, err := unix.CopyFileRange(in, &oi, dst.fd, &oo, int(min(length, 1<<30)), int(flags))
	if c < 0 {
		c = 0
	}
	return uint32(c), toErrno(err)
}
