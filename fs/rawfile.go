package fs

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// Raw opens: a read-only open of a pure lower regular file the kernel holds
// raw is answered by rawFS with a handle of its own on the file's object,
// and the node stays raw (no go-fuse Inode, no slow FORGET later). A tar
// of a tree opens every file once; through the bridge each open promoted
// its node, and every file tarred left an Inode behind.
//
// The handle is what the bridge's objectFile would be, with the same open
// flags (FOPEN_KEEP_CACHE, FOPEN_NOFLUSH): the object is opened at the
// first read that needs it. What stays with the bridge: opens that may
// write, truncate or append, and large files on a read-only mount with
// passthrough (the kernel takes one backing file per inode, and the bridge
// keeps that per Inode), and nodes promoted already.
//
// rawFS's handle numbers have rawFhBit set; go-fuse's are 32-bit indexes
// of its table, so the two never meet. READ, LSEEK, FSYNC and RELEASE of
// a raw handle are rawFS's; a GETATTR or SETATTR naming one goes on
// without it. POSIX locks never reach the server (go-fuse's EnableLocks is
// off: the kernel keeps them).
//
// A node promoted while raw handles are open (a write open of the same
// file, a chmod, a rename) gets its node bound to them when the bridge
// makes the node (node.newChild): from then on each handle reads as the
// bridge's objectFile does (the upper file once it has data of its own, so
// a reader sees later writes), and on upper passthrough mounts the handles
// are counted as cached opens of the node (iomode.go), so a write open
// beside them is not passed through (the kernel would refuse it: EIO).
// A raw open is decided under its node's shard of the promotion lock,
// which a promotion holds while the bridge makes the node, so a node is
// either promoted before it (the open goes to the bridge) or bound after it.

const rawFhBit = 1 << 63

// rawFiles is a mount's table of raw handles.
type rawFiles struct {
	mu    sync.Mutex
	next  uint64
	h     map[uint64]*rawFile  // by handle number
	inode map[uint64]*rawInode // by inode number, while handles are open
}

// rawInode is the raw handles open on one inode, and its node once the
// bridge has one.
type rawInode struct {
	files []*rawFile
	n     *node
}

// rawFile is a raw handle: a read-only open of lower entry e.
type rawFile struct {
	u    *union
	fh   uint64
	e    *layerstore.Entry
	data lazyObject                 // until bound
	obj  atomic.Pointer[objectFile] // the bridge's handle once the node is bound
}

// rawOpenable reports whether an OPEN with flags of raw node id may be
// answered by rawFS, and its entry.
func (r *rawFS) rawOpenable(id uint64, flags, mode uint32) (*layerstore.Entry, bool) {
	const mayChange = unix.O_ACCMODE | unix.O_TRUNC | unix.O_APPEND
	if flags&mayChange != unix.O_RDONLY || mode&fuse.OPEN_KILL_SUIDGID != 0 {
		return nil, false
	}
	ref, ok := r.rawRef(id)
	if !ok || r.u.tree.TypeAt(ref) != layerstore.TypeReg {
		return nil, false
	}
	e := r.u.tree.At(ref)
	if r.u.passthrough.Load() && e.Size >= passthroughMinSize {
		return nil, false // the bridge registers its backing file
	}
	return e, true
}

// rawOpen answers an OPEN of raw node id, or reports false for the bridge.
func (r *rawFS) rawOpen(in *fuse.OpenIn, out *fuse.OpenOut) bool {
	e, ok := r.rawOpenable(in.NodeId, in.Flags, in.Mode)
	if !ok {
		return false
	}
	rn := &r.u.raw
	sh := rn.shard(in.NodeId)
	sh.Lock()
	defer sh.Unlock()
	// Not promoted (else the bridge has its node and takes the open), and
	// still pure.
	if !rn.needsPromotion(in.NodeId) || !r.u.pure(in.NodeId) {
		return false
	}
	rf := &r.u.rawFiles
	h := &rawFile{u: r.u, e: e}
	rf.mu.Lock()
	// Again under rawFiles.mu, which bindRaw takes: a copy-up that does not
	// promote the node (a directory's, renamed) marks the file copied before
	// the bridge can make its node (a lookup of a pure entry is answered raw,
	// and a promotion holds the node's shard), and newChild binds after
	// making it. So
	// either bindRaw finds this handle, or this check finds the copy and
	// the open goes to the bridge; a handle never stays unbound beside a
	// node the bridge keeps.
	if !r.u.pure(in.NodeId) {
		rf.mu.Unlock()
		return false
	}
	if rf.h == nil {
		rf.h = map[uint64]*rawFile{}
		rf.inode = map[uint64]*rawInode{}
	}
	rf.next++
	h.fh = rf.next | rawFhBit
	rf.h[h.fh] = h
	ri := rf.inode[e.Ino]
	if ri == nil {
		ri = &rawInode{}
		rf.inode[e.Ino] = ri
	}
	ri.files = append(ri.files, h)
	rf.mu.Unlock()
	out.Fh = h.fh
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	return true
}

// rawHandle returns raw handle fh, nil for the bridge's.
func (r *rawFS) rawHandle(fh uint64) (*rawFile, bool) {
	if fh&rawFhBit == 0 {
		return nil, false
	}
	rf := &r.u.rawFiles
	rf.mu.Lock()
	h := rf.h[fh]
	rf.mu.Unlock()
	return h, true
}

// bindRaw gives the raw handles open on n's inode their node, when the
// bridge makes it.
func (u *union) bindRaw(n *node) {
	rf := &u.rawFiles
	rf.mu.Lock()
	defer rf.mu.Unlock()
	ri := rf.inode[n.ino]
	if ri == nil || ri.n != nil {
		return // none open, or bound: the bridge has one Inode per inode number
	}
	ri.n = n
	for _, h := range ri.files {
		h.bind(n)
	}
}

// bind makes h read through a handle of the bridge's kind on n. Callers
// hold rawFiles.mu.
func (h *rawFile) bind(n *node) {
	o := &objectFile{n: n, e: h.e}
	// The object opened so far is o's now (o's Release closes it): a read
	// of h racing the bind may still use it, and ends before the kernel
	// sends h's RELEASE. One that opens it again after the swap leaves it
	// to h's release.
	o.data.f.Store(h.data.f.Swap(nil))
	if n.u.upperPT.Load() {
		o.counted = true
		n.u.io.openMode(n, false)
	}
	h.obj.Store(o)
}

// object returns the open object, opening it the first time.
func (h *rawFile) object() (*os.File, syscall.Errno) { return h.data.open(h.u, h.e) }

// Until its node has an upper copy with data of its own, the object holds
// the file: a copy-up that made no node (a directory's, renamed) leaves
// a metacopy, whose bytes are the object's.
func (h *rawFile) read(dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if o := h.obj.Load(); o != nil {
		return o.Read(nil, dest, off)
	}
	f, errno := h.object()
	if errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultFd(f.Fd(), off, len(dest)), 0
}

func (h *rawFile) lseek(off uint64, whence uint32) (uint64, syscall.Errno) {
	if o := h.obj.Load(); o != nil {
		return o.Lseek(nil, off, whence)
	}
	f, errno := h.object()
	if errno != 0 {
		return 0, errno
	}
	o, err := unix.Seek(int(f.Fd()), int64(off), int(whence))
	return uint64(o), toErrno(err)
}

// release drops h from the tables and closes what it opened.
func (r *rawFS) rawRelease(h *rawFile) {
	rf := &r.u.rawFiles
	rf.mu.Lock()
	delete(rf.h, h.fh)
	if ri := rf.inode[h.e.Ino]; ri != nil {
		for i, g := range ri.files {
			if g == h {
				ri.files = append(ri.files[:i], ri.files[i+1:]...)
				break
			}
		}
		if len(ri.files) == 0 {
			delete(rf.inode, h.e.Ino)
		}
	}
	o := h.obj.Swap(nil)
	rf.mu.Unlock()
	if o != nil {
		o.Release(nil)
	}
	if f := h.data.f.Load(); f != nil {
		f.Close()
	}
}

// closeAll closes every raw handle when the mount has ended: a connection
// aborted with files open sends no RELEASE.
func (rf *rawFiles) closeAll() {
	rf.mu.Lock()
	hs := rf.h
	rf.h, rf.inode = nil, nil
	rf.mu.Unlock()
	for _, h := range hs {
		if o := h.obj.Swap(nil); o != nil {
			o.Release(nil)
		}
		if f := h.data.f.Swap(nil); f != nil {
			f.Close()
		}
	}
}

// rawOpens returns how many raw handles are open (for tests).
func (u *union) rawOpens() int {
	rf := &u.rawFiles
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return len(rf.h)
}
