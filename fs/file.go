package fs

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// passthroughMinSize is the smallest lower file a read-only mount reads
// with passthrough. Smaller files gain little (a cold read is one or two
// READs, a warm one is served from the page cache).
const passthroughMinSize = 1 << 20

// upperOpenFlags keeps the flags of a FUSE open that mean something to the
// upper file: the access mode, truncation and synchronous writes. The kernel
// computes append offsets itself, and O_DIRECT alignment is the caller's
// business with the kernel, not ours with the upper file system. A
// write-only open gets a read-write descriptor: with the writeback cache the
// kernel reads through a write handle to fill the rest of a page it writes
// in part (the kernel checked the caller's access already).
func upperOpenFlags(flags uint32) uint32 {
	acc := flags & unix.O_ACCMODE
	if acc == unix.O_WRONLY {
		acc = unix.O_RDWR
	}
	return acc | flags&(unix.O_TRUNC|unix.O_SYNC|unix.O_DSYNC) | unix.O_CLOEXEC | unix.O_NOFOLLOW
}

var _ = (gofs.NodeOpener)((*node)(nil))

// Open opens a regular file. A read-only open of a file whose data is all in
// an object gets a handle on the object (objectFile), opened read-only, with
// passthrough for large lower files on a read-only mount when the kernel
// allows it. An open for writing copies the file up and gets a handle on the
// upper file (upperFile), which passes through to the upper file where the
// mount and the node allow it (iomode.go); the data stays in the object
// until a write lands in it.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	write := flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0
	if write && u.ro {
		return nil, 0, syscall.EROFS
	}
	n.lock()
	defer n.unlock()
	if write {
		if errno := n.copyUpForOpen(flags&unix.O_TRUNC != 0); errno != 0 {
			return nil, 0, errno
		}
		f, errno := n.openUpper(flags)
		if errno != 0 {
			return nil, 0, errno
		}
		return n.upperHandle(f), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
	}
	if n.hasUpper() && u.metacopyOf(n.ino) == nil {
		f, errno := n.openUpper(flags)
		if errno != 0 {
			return nil, 0, errno
		}
		return n.upperHandle(f), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
	}
	e := n.dataEntry()
	if e == nil {
		return nil, 0, syscall.EIO
	}
	h := &objectFile{n: n, e: e}
	if u.upperPT.Load() {
		// Through the page cache: a later passthrough open of the
		// node's upper file must wait until this one is released.
		h.counted = true
		u.io.openMode(n, false)
	}
	// Only read-only mounts pass lower files through (iomode.go), and only
	// a file that is all object: the kernel would not see what a metacopy
	// has beyond the object's end.
	if u.passthrough.Load() && !n.hasUpper() && e.Size >= passthroughMinSize {
		f, errno := h.object()
		if errno != 0 {
			// Nothing to undo: a failed open tracks nothing, and only
			// writable mounts count opens (u.passthrough is read-only's).
			return nil, 0, errno // the kernel takes the descriptor now
		}
		if st, err := fstat(int(f.Fd())); err == nil && u.backing.ok(int(f.Fd()), &st) {
			return &ptObjectFile{h}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
		}
	}
	return h, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

// dataEntry is the lower entry whose object holds n's data: its own while it
// has no upper copy, the metacopy's after.
func (n *node) dataEntry() *layerstore.Entry {
	if e := n.u.metacopyOf(n.ino); e != nil {
		return e
	}
	if !n.hasUpper() {
		return n.lowerEntry()
	}
	return nil
}

// openUpper opens n's upper file with the flags of a FUSE open, as a handle.
func (n *node) openUpper(flags uint32) (*upperFile, syscall.Errno) {
	fd, errno := n.openUpperFd(flags)
	if errno != 0 {
		return nil, errno
	}
	f := newUpperFile(n, fd, flags&unix.O_ACCMODE != unix.O_RDONLY)
	f.meta.Store(n.u.metacopyOf(n.ino) != nil)
	return f, 0
}

// openUpperFd opens n's upper file with the flags of a FUSE open: by its
// path, or when it has no name left, by reopening a held descriptor of it.
func (n *node) openUpperFd(flags uint32) (int, syscall.Errno) {
	u := n.u
	u.nsMu.RLock()
	defer u.nsMu.RUnlock()
	fl := int(upperOpenFlags(flags))
	fd, err := u.openUpperOf(n, fl)
	if err == nil {
		return fd, 0
	}
	r, ok := n.holdFd()
	if !ok {
		return -1, toErrno(err)
	}
	defer r.drop()
	if fd, err = openat(unix.AT_FDCWD, procPath(r.fd), fl&^unix.O_NOFOLLOW, 0); err != nil {
		return -1, toErrno(err)
	}
	st, err := fstat(fd)
	if ino, ok := u.knownIno(&st); err != nil || !ok || ino != n.ino {
		unix.Close(fd)
		return -1, syscall.ESTALE
	}
	return fd, 0
}

// readMetacopy reads a metacopy file: bytes below the object's end (e.Size)
// from the object, the rest (appended since) from the upper file.
func readMetacopy(dest []byte, off int64, obj *os.File, upperFd int, e *layerstore.Entry) (fuse.ReadResult, syscall.Errno) {
	end := off + int64(len(dest))
	switch {
	case end <= e.Size:
		return fuse.ReadResultFd(obj.Fd(), off, len(dest)), 0
	case off >= e.Size:
		return fuse.ReadResultFd(uintptr(upperFd), off, len(dest)), 0
	}
	head := dest[:e.Size-off]
	c, err := obj.ReadAt(head, off)
	if c < len(head) {
		return nil, toErrno(fmt.Errorf("object %s: short read at %d: %w", e.Digest, off, err))
	}
	t, err := unix.Pread(upperFd, dest[len(head):], e.Size)
	if err != nil {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:len(head)+max(t, 0)]), 0
}

// objectFile is a read-only handle opened on the object that holds a file's
// data; ptObjectFile is one the kernel reads with passthrough. Once the file
// has an upper copy with data of its own (someone wrote to it), it reads the
// upper file, so it sees later writes as POSIX wants; a passthrough handle
// cannot, the kernel reads the object itself.
//
// The object is opened at the first read that needs it, not at OPEN: a
// warm read is served from the page cache (FOPEN_KEEP_CACHE) and needs no
// descriptor, so tar of a warm tree costs no open(2) and close(2) of
// objects per file. A missing or short object then fails the read with EIO.
type objectFile struct {
	n    *node
	e    *layerstore.Entry // the entry whose object holds the data
	data lazyObject
	// counted: the open is counted in the union's io modes as cached
	// (upper passthrough mounts).
	counted bool

	mu       sync.Mutex // guards opening upper, and the flags below
	upper    int        // read-only fd of the upper file once needed; 0: not open
	tracked  bool       // in the union's table of handles holding descriptors
	released bool
}

// lazyObject is the object that holds a file's data, opened at the first
// read that needs it (objectFile's and rawFile's).
type lazyObject struct {
	f  atomic.Pointer[os.File]
	mu sync.Mutex // guards opening f
}

// open returns the open object of e, opening it the first time.
func (l *lazyObject) open(u *union, e *layerstore.Entry) (*os.File, syscall.Errno) {
	if f := l.f.Load(); f != nil {
		return f, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.f.Load(); f != nil {
		return f, 0
	}
	f, err := u.openObjectOf(e)
	if err != nil {
		u.log.Error("strata fs: cannot read object", "path", e.Path, "digest", e.Digest, "err", err)
		return nil, syscall.EIO
	}
	l.f.Store(f)
	return f, 0
}

// object returns the open object, opening it the first time.
func (h *objectFile) object() (*os.File, syscall.Errno) {
	if f := h.data.f.Load(); f != nil {
		return f, 0
	}
	f, errno := h.data.open(h.n.u, h.e)
	if errno == 0 {
		h.mu.Lock()
		h.trackLocked()
		h.mu.Unlock()
	}
	return f, errno
}

// trackLocked puts h in the union's table of handles to close when the
// mount ends, once it holds a descriptor. Callers hold h.mu.
func (h *objectFile) trackLocked() {
	if !h.tracked && !h.released {
		h.tracked = true
		h.n.u.state.track(h)
	}
}

var (
	_ = (gofs.FileReader)((*objectFile)(nil))
	_ = (gofs.FileLseeker)((*objectFile)(nil))
	_ = (gofs.FileReleaser)((*objectFile)(nil))
	_ = (gofs.FileFsyncer)((*objectFile)(nil))
	_ = (gofs.FileFlusher)((*objectFile)(nil))
)

// ptObjectFile is an objectFile the kernel reads with passthrough: a
// large lower file on a read-only mount (Open), the object opened already.
// Only it offers the object: go-fuse hands a node's backing ID to every
// later open whose handle implements FilePassthroughFder, so no other
// handle of an object (a writable mount's objectFile, a raw handle's bound
// one) could meet a backing file, the upper file's or the object's, by
// type rather than by the invariant that they meet none (iomode.go).
type ptObjectFile struct{ *objectFile }

var _ = (gofs.FilePassthroughFder)((*ptObjectFile)(nil))

// PassthroughFd lets the kernel read the object itself. The handle is
// read-only, and so is the descriptor.
func (h *ptObjectFile) PassthroughFd() (int, bool) {
	return int(h.data.f.Load().Fd()), true // opened by Open
}

// upperFd opens the upper file for reading, once.
func (h *objectFile) upperFd() (int, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.upper > 0 {
		return h.upper, 0
	}
	if h.released {
		return -1, syscall.EBADF
	}
	fd, errno := h.n.openUpperFd(unix.O_RDONLY) // this handle's own
	if errno != 0 {
		return -1, errno
	}
	h.upper = fd
	h.trackLocked()
	return h.upper, 0
}

// wholeFd returns a descriptor that holds the whole file, or false for a
// metacopy, which is split between object and upper file.
func (h *objectFile) wholeFd() (int, bool, syscall.Errno) {
	n := h.n
	if !n.hasUpper() {
		f, errno := h.object()
		if errno != 0 {
			return -1, false, errno
		}
		return int(f.Fd()), true, 0
	}
	if n.u.metacopyOf(n.ino) != nil {
		return -1, false, 0
	}
	fd, errno := h.upperFd()
	return fd, errno == 0, errno
}

func (h *objectFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := h.n
	if !n.hasUpper() {
		// The object's size was checked when it was opened, and objects
		// never change.
		f, errno := h.object()
		if errno != 0 {
			return nil, errno
		}
		return fuse.ReadResultFd(f.Fd(), off, len(dest)), 0
	}
	if e := n.u.metacopyOf(n.ino); e != nil {
		f, errno := h.object()
		if errno != 0 {
			return nil, errno
		}
		if off+int64(len(dest)) <= e.Size {
			return fuse.ReadResultFd(f.Fd(), off, len(dest)), 0
		}
		fd, errno := h.upperFd()
		if errno != 0 {
			return nil, errno
		}
		return readMetacopy(dest, off, f, fd, e)
	}
	fd, errno := h.upperFd()
	if errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultFd(uintptr(fd), off, len(dest)), 0
}

func (h *objectFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	fd, whole, errno := h.wholeFd()
	if errno != 0 {
		return 0, errno
	}
	if !whole {
		if e := h.n.u.metacopyOf(h.n.ino); e != nil {
			f, errno := h.object()
			if errno != 0 {
				return 0, errno
			}
			ufd, errno := h.upperFd()
			if errno != 0 {
				return 0, errno
			}
			return seekMetacopy(f, ufd, e, int64(off), int(whence))
		}
		if fd, errno = h.upperFd(); errno != 0 {
			return 0, errno
		}
	}
	o, err := unix.Seek(fd, int64(off), int(whence))
	return uint64(o), toErrno(err)
}

// seekMetacopy answers SEEK_DATA and SEEK_HOLE for a metacopy file, whose
// bytes below the object's end are the object's (obj) and the rest the
// upper file's (upper). The object's end counts as a hole only where the
// file ends; within the file, its block does not end there, so the answer is
// the next block boundary, as a file system that holds the whole file says.
func seekMetacopy(obj *os.File, upper int, e *layerstore.Entry, off int64, whence int) (uint64, syscall.Errno) {
	st, err := fstat(upper)
	if err != nil {
		return 0, toErrno(err)
	}
	size := st.Size
	if off >= size {
		return 0, syscall.ENXIO
	}
	const block = 4096
	tail := min((e.Size+block-1)/block*block, size) // where the upper file's own data may start
	switch whence {
	case unix.SEEK_DATA:
		if off < e.Size {
			d, err := unix.Seek(int(obj.Fd()), off, unix.SEEK_DATA)
			if err == nil && d < e.Size {
				return uint64(d), 0
			}
			off = e.Size
		}
		d, err := unix.Seek(upper, off, unix.SEEK_DATA)
		if err != nil {
			return 0, toErrno(err)
		}
		return uint64(d), 0
	case unix.SEEK_HOLE:
		if off < e.Size {
			h, err := unix.Seek(int(obj.Fd()), off, unix.SEEK_HOLE)
			if err == nil && h < e.Size {
				return uint64(h), 0
			}
			off = tail
			if off >= size {
				return uint64(size), 0
			}
		}
		h, err := unix.Seek(upper, off, unix.SEEK_HOLE)
		if err != nil {
			return 0, toErrno(err)
		}
		return uint64(h), 0
	}
	return 0, syscall.EINVAL
}

// Release closes what h opened, once: after the kernel's RELEASE, or when
// the mount has ended without one (closeHandles).
func (h *objectFile) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		return syscall.EBADF
	}
	h.released = true
	if h.upper > 0 {
		unix.Close(h.upper)
		h.upper = 0
	}
	tracked := h.tracked
	h.mu.Unlock()
	if tracked {
		h.n.u.state.untrack(h)
	}
	if h.counted {
		h.n.u.io.closeMode(h.n, false)
	}
	if f := h.data.f.Load(); f != nil {
		return toErrno(f.Close())
	}
	return 0
}

func (h *objectFile) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }
func (h *objectFile) Flush(ctx context.Context) syscall.Errno               { return 0 }

// upperFile is a handle on a file of the upper dir. While the file is a
// metacopy (meta), bytes below the object's end are the object's: reads
// there go to the object, and the first write there copies the data. Its
// descriptor is shared with requests that took it from the node's table
// (holdFd), and closed when the last of them and the handle are done.
type upperFile struct {
	n *node
	fdRef
	meta atomic.Bool // the file may still be a metacopy

	// counted: the open is counted in the union's io modes (upper
	// passthrough mounts), as passthrough when pt.
	counted, pt bool
	write       bool // opened for writing (hasWriter)

	mu     sync.Mutex
	closed bool
	obj    *os.File // the metacopy's object, once read
}

func newUpperFile(n *node, fd int, write bool) *upperFile {
	f := &upperFile{n: n, write: write}
	f.init(fd)
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

// metacopy returns the entry whose object holds the data below its size,
// nil once the file holds its own data.
func (f *upperFile) metacopy() *layerstore.Entry {
	if !f.meta.Load() {
		return nil
	}
	e := f.n.u.metacopyOf(f.n.ino)
	if e == nil {
		f.meta.Store(false)
	}
	return e
}

func (f *upperFile) object(e *layerstore.Entry) (*os.File, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.obj != nil {
		return f.obj, 0
	}
	obj, err := f.n.u.openObjectOf(e)
	if err != nil {
		f.n.u.log.Error("strata fs: cannot read object", "path", e.Path, "digest", e.Digest, "err", err)
		return nil, syscall.EIO
	}
	f.obj = obj
	return obj, 0
}

func (f *upperFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := f.metacopy(); e != nil {
		obj, errno := f.object(e)
		if errno != 0 {
			return nil, errno
		}
		return readMetacopy(dest, off, obj, f.fd, e)
	}
	return fuse.ReadResultFd(uintptr(f.fd), off, len(dest)), 0
}

func (f *upperFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if f.metacopy() != nil {
		if errno := f.n.ensureData(off); errno != 0 {
			return 0, errno
		}
	}
	c, err := unix.Pwrite(f.fd, data, off)
	if c < 0 {
		c = 0
	}
	return uint32(c), toErrno(err)
}

func (f *upperFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	if e := f.metacopy(); e != nil {
		obj, errno := f.object(e)
		if errno != 0 {
			return 0, errno
		}
		return seekMetacopy(obj, f.fd, e, int64(off), int(whence))
	}
	o, err := unix.Seek(f.fd, int64(off), int(whence))
	return uint64(o), toErrno(err)
}

func (f *upperFile) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if f.metacopy() != nil {
		if errno := f.n.ensureData(int64(off)); errno != 0 {
			return errno
		}
	}
	return toErrno(unix.Fallocate(f.fd, mode, int64(off), int64(size)))
}

func (f *upperFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if flags&1 != 0 {
		return toErrno(unix.Fdatasync(f.fd))
	}
	return toErrno(unix.Fsync(f.fd))
}

func (f *upperFile) Flush(ctx context.Context) syscall.Errno { return 0 }

// Release closes f, once: after the kernel's RELEASE, or when the mount
// has ended without one (closeHandles).
func (f *upperFile) Release(ctx context.Context) syscall.Errno {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return syscall.EBADF
	}
	f.closed = true
	if f.obj != nil {
		f.obj.Close()
	}
	f.mu.Unlock()
	f.n.removeFile(f)
	if f.counted {
		f.n.u.io.closeMode(f.n, f.pt)
	}
	return toErrno(f.drop())
}

var _ = (gofs.NodeCopyFileRanger)((*node)(nil))

// CopyFileRange copies between two open files of the mount in the kernel.
// Where a metacopy is involved it declines (EOPNOTSUPP), and the kernel
// copies through reads and writes instead.
func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	var in int
	uin, _ := asUpper(fhIn)
	switch h := fhIn.(type) {
	case *upperFile, *ptUpperFile:
		if uin.metacopy() != nil {
			return 0, syscall.EOPNOTSUPP
		}
		in = uin.fd
	case *objectFile, *ptObjectFile:
		o, _ := h.(*objectFile)
		if p, ok := h.(*ptObjectFile); ok {
			o = p.objectFile
		}
		fd, whole, errno := o.wholeFd()
		if errno != 0 {
			return 0, errno
		}
		if !whole {
			return 0, syscall.EOPNOTSUPP
		}
		in = fd
	default:
		return 0, syscall.EBADF
	}
	dst, ok := asUpper(fhOut)
	if !ok {
		return 0, syscall.EBADF
	}
	if dst.metacopy() != nil {
		return 0, syscall.EOPNOTSUPP
	}
	oi, oo := int64(offIn), int64(offOut)
	c, err := unix.CopyFileRange(in, &oi, dst.fd, &oo, int(min(length, 1<<30)), int(flags))
	if c < 0 {
		c = 0
	}
	return uint32(c), toErrno(err)
}
