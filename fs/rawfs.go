package fs

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// rawFS stands between the kernel and go-fuse's node bridge. It does two
// things the bridge does not:
//
//   - No OPENDIR and RELEASEDIR round trips. Its OPENDIR answers ENOSYS, and
//     the kernel stops sending OPENDIR and RELEASEDIR for the life of the
//     mount and caches listings as if every open had said FOPEN_CACHE_DIR
//     and FOPEN_KEEP_CACHE (fuse_do_open in the kernel's fs/fuse/file.c).
//     A READDIR then comes with no handle; rawFS opens one on the bridge for
//     the request, seeks it to the request's offset and releases it. A
//     directory's listing is built again for each request of a listing that
//     does not fit one reply; the kernel asks once per listing while its
//     cache holds.
//   - Clearing setuid and setgid bits where the kernel asks (FUSE_HANDLE_
//     KILLPRIV_V2). With it the kernel marks the mount SB_NOSEC, so a write
//     asks for security.capability once per inode instead of a GETXATTR
//     round trip before every write(2) (file_remove_privs); in return the
//     server clears the bits after a WRITE, SETATTR or OPEN that says
//     *_KILL_SUIDGID, and at a SETATTR that sets nothing when the caller
//     may (privs.go). The server's own writes to the upper file drop
//     security.capability (the host kernel does that for every writer).
//   - No FLUSH round trips: ENOSYS once (see Flush).
//   - Raw nodes: pure lower entries answered from the tree, with no
//     go-fuse Inode (rawnode.go), and read-only opens of their files
//     answered with handles of its own (rawfile.go).
//   - Counting requests by opcode (Options.Trace), for the bench harness.
//
// The same cannot be done for files (FUSE_NO_OPEN_SUPPORT): the kernel's
// no_open is one flag for the whole connection, so upper files, which need
// an open to copy up and a descriptor to write, would lose theirs too, and
// FUSE passthrough is set up only by an OPEN reply.
type rawFS struct {
	fuse.RawFileSystem
	u     *union
	trace *opCounts // nil: not counting
}

// opCounts counts requests by opcode name, and GETXATTRs by the names
// that tools ask for on every entry.
type opCounts struct {
	n  [opLast]atomic.Uint64
	ns [opLast]atomic.Int64                 // time the server spent on them
	x  [len(tracedXattrs) + 1]atomic.Uint64 // the last: any other name
}

// tracedXattrs are the names GETXATTRs are counted by: what ls -l asks of
// every entry, and what a write asks of every file.
var tracedXattrs = [...]string{"security.selinux", "system.posix_acl_access", "system.posix_acl_default", "security.capability"}

func (c *opCounts) countXattr(name string) {
	i := len(tracedXattrs)
	for j, x := range tracedXattrs {
		if x == name {
			i = j
			break
		}
	}
	c.x[i].Add(1)
}

// The opcodes rawFS counts, in the kernel's names.
const (
	opLookup = iota
	opForget
	opGetattr
	opSetattr
	opMknod
	opMkdir
	opUnlink
	opRmdir
	opRename
	opLink
	opSymlink
	opReadlink
	opAccess
	opGetxattr
	opListxattr
	opSetxattr
	opRemovexattr
	opCreate
	opTmpfile
	opOpen
	opRead
	opLseek
	opGetlk
	opSetlk
	opRelease
	opWrite
	opCopyFileRange
	opIoctl
	opFlush
	opFsync
	opFallocate
	opOpendir
	opReaddir
	opReaddirplus
	opReleasedir
	opFsyncdir
	opStatfs
	opStatx
	opLast
)

var opNames = [opLast]string{
	"LOOKUP", "FORGET", "GETATTR", "SETATTR", "MKNOD", "MKDIR", "UNLINK", "RMDIR", "RENAME", "LINK", "SYMLINK",
	"READLINK", "ACCESS", "GETXATTR", "LISTXATTR", "SETXATTR", "REMOVEXATTR", "CREATE", "TMPFILE", "OPEN", "READ",
	"LSEEK", "GETLK", "SETLK", "RELEASE", "WRITE", "COPY_FILE_RANGE", "IOCTL", "FLUSH", "FSYNC", "FALLOCATE",
	"OPENDIR", "READDIR", "READDIRPLUS", "RELEASEDIR", "FSYNCDIR", "STATFS", "STATX",
}

// count counts a request of op; the request defers done on what it
// returns, which adds the time the server spent on it.
func (r *rawFS) count(op int) opTimer {
	if r.trace == nil {
		return opTimer{}
	}
	r.trace.n[op].Add(1)
	return opTimer{r.trace, op, time.Now()}
}

// timer starts timing a request of op without counting it.
func (r *rawFS) timer(op int) opTimer {
	if r.trace == nil {
		return opTimer{}
	}
	return opTimer{r.trace, op, time.Now()}
}

// opTimer times one request (nothing when not tracing).
type opTimer struct {
	c  *opCounts
	op int
	t0 time.Time
}

func (t opTimer) done() {
	if t.c != nil {
		t.c.ns[t.op].Add(int64(time.Since(t.t0)))
	}
}

// OpCount is the number of requests of one opcode, and the time the server
// spent on them (from the request's arrival at rawFS to its answer, not
// counting the kernel's or the reply's write to it).
type OpCount struct {
	Op    string
	Count uint64
	Time  time.Duration
}

// snapshot returns the nonzero counts, largest first, and with reset sets
// them to zero. GETXATTRs are also counted by name, as
// "GETXATTR:security.selinux" and so on ("GETXATTR:other").
func (c *opCounts) snapshot(reset bool) []OpCount {
	var out []OpCount
	take := func(a *atomic.Uint64, t *atomic.Int64, name string) {
		var v uint64
		var ns int64
		if reset {
			v = a.Swap(0)
			if t != nil {
				ns = t.Swap(0)
			}
		} else {
			v = a.Load()
			if t != nil {
				ns = t.Load()
			}
		}
		if v > 0 {
			out = append(out, OpCount{name, v, time.Duration(ns)})
		}
	}
	for i := range c.n {
		take(&c.n[i], &c.ns[i], opNames[i])
	}
	for i := range c.x {
		name := "other"
		if i < len(tracedXattrs) {
			name = tracedXattrs[i]
		}
		take(&c.x[i], nil, "GETXATTR:"+name)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	return out
}

func (r *rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer r.count(opOpendir).done()
	return fuse.ENOSYS
}

func (r *rawFS) ReleaseDir(in *fuse.ReleaseIn) {
	defer r.count(opReleasedir).done()
	_ = r.bridged(nil, in.Caller, in.NodeId)
	r.RawFileSystem.ReleaseDir(in)
}

// readDir serves a READDIR or READDIRPLUS. Without a handle (no OPENDIR)
// it opens one for this request.
func (r *rawFS) readDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	if in.Fh == 0 {
		if ref, ok := r.rawRef(in.NodeId); ok {
			return r.u.rawReadDir(ref, in.NodeId, in, out, plus)
		}
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	read := r.RawFileSystem.ReadDir
	if plus {
		read = r.RawFileSystem.ReadDirPlus
	}
	if in.Fh != 0 {
		return read(cancel, in, out)
	}
	oin := fuse.OpenIn{InHeader: in.InHeader, Flags: unix.O_RDONLY | unix.O_DIRECTORY}
	var oout fuse.OpenOut
	if st := r.RawFileSystem.OpenDir(cancel, &oin, &oout); !st.Ok() {
		return st
	}
	rin := *in
	rin.Fh = oout.Fh
	st := read(cancel, &rin, out)
	r.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: oout.Fh})
	return st
}

func (r *rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer r.count(opReaddir).done()
	return r.readDir(cancel, in, out, false)
}

func (r *rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer r.count(opReaddirplus).done()
	return r.readDir(cancel, in, out, true)
}

func (r *rawFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer r.count(opFsyncdir).done()
	if in.Fh == 0 {
		return fuse.OK // directories are synced with the upper dir's file system
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.FsyncDir(cancel, in)
}

// The rest count, and make sure the bridge has an Inode of each node a
// request names (rawnode.go).

// killSuidgid clears the setuid bit, and the setgid bit of a group-
// executable file, of node h.NodeId (through handle fh when non-zero), as
// the kernel would have had it kept privileges itself.
func (r *rawFS) killSuidgid(cancel <-chan struct{}, h fuse.InHeader, fh uint64) fuse.Status {
	var a fuse.AttrOut
	if st := r.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: h}, &a); !st.Ok() {
		return st
	}
	mode, kill := a.Mode&0o7777, suidgidBits(a.Mode) // a directory's setgid bit is not a privilege
	if kill == 0 {
		return fuse.OK
	}
	in := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: h, Valid: fuse.FATTR_MODE, Mode: mode &^ kill}}
	if fh != 0 {
		in.Valid |= fuse.FATTR_FH
		in.Fh = fh
	}
	var out fuse.AttrOut
	return r.RawFileSystem.SetAttr(cancel, &in, &out)
}

func (r *rawFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer r.count(opLookup).done()
	if ref, ok := r.rawRef(h.NodeId); ok {
		if st, forward := r.u.rawLookup(ref, name, out); !forward {
			return st
		}
	}
	if st := r.bridged(cancel, h.Caller, h.NodeId); !st.Ok() {
		return st
	}
	st := r.RawFileSystem.Lookup(cancel, h, name, out)
	switch {
	case st == fuse.Status(errRaw):
		return fuse.OK // a raw child: out is filled
	case st == fuse.ENOENT && out.EntryTimeout() == 0:
		// What the bridge does with Options.NegativeTimeout, which is
		// not set so that errRaw's entries in a READDIRPLUS keep theirs.
		out.SetEntryTimeout(negativeTimeout)
		return fuse.OK
	}
	return st
}

func (r *rawFS) Forget(nodeid, nlookup uint64) {
	defer r.count(opForget).done()
	r.forget(nodeid, nlookup)
}

func (r *rawFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer r.count(opGetattr).done()
	if in.Fh()&rawFhBit != 0 {
		in.Flags_ &^= fuse.FUSE_GETATTR_FH // a raw handle: the node answers
		in.Fh_ = 0
	}
	if in.Fh() == 0 {
		if ref, ok := r.rawRef(in.NodeId); ok {
			return r.u.rawGetattr(ref, out)
		}
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.GetAttr(cancel, in, out)
}

func (r *rawFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer r.count(opSetattr).done()
	if fh, ok := in.GetFh(); ok && fh&rawFhBit != 0 {
		in.Valid &^= fuse.FATTR_FH // a raw handle: the node answers
		in.Fh = 0
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	kill := in.Valid&fuse.FATTR_KILL_SUIDGID != 0 // one that sets nothing: the node's (privs.go)
	in.Valid &^= fuse.FATTR_KILL_SUIDGID
	st := r.RawFileSystem.SetAttr(cancel, in, out)
	if st.Ok() && kill && in.Valid&fuse.FATTR_MODE == 0 {
		fh, _ := in.GetFh()
		if st = r.killSuidgid(cancel, in.InHeader, fh); st.Ok() {
			st = r.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: in.InHeader}, out)
		}
	}
	return st
}

func (r *rawFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer r.count(opMknod).done()
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Mknod(cancel, in, name, out)
}

func (r *rawFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer r.count(opMkdir).done()
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (r *rawFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer r.count(opUnlink).done()
	if st := r.bridged(cancel, h.Caller, h.NodeId); !st.Ok() {
		return st
	}
	r.prePromote(cancel, h.Caller, h.NodeId, name)
	return r.RawFileSystem.Unlink(cancel, h, name)
}

func (r *rawFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer r.count(opRmdir).done()
	if st := r.bridged(cancel, h.Caller, h.NodeId); !st.Ok() {
		return st
	}
	r.prePromote(cancel, h.Caller, h.NodeId, name)
	return r.RawFileSystem.Rmdir(cancel, h, name)
}

func (r *rawFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer r.count(opRename).done()
	for _, id := range []uint64{in.NodeId, in.Newdir} {
		if st := r.bridged(cancel, in.Caller, id); !st.Ok() {
			return st
		}
	}
	r.prePromote(cancel, in.Caller, in.NodeId, oldName)
	r.prePromote(cancel, in.Caller, in.Newdir, newName)
	return r.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (r *rawFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer r.count(opLink).done()
	for _, id := range []uint64{in.NodeId, in.Oldnodeid} {
		if st := r.bridged(cancel, in.Caller, id); !st.Ok() {
			return st
		}
	}
	return r.RawFileSystem.Link(cancel, in, name, out)
}

func (r *rawFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	defer r.count(opSymlink).done()
	if st := r.bridged(cancel, h.Caller, h.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Symlink(cancel, h, target, name, out)
}

func (r *rawFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	defer r.count(opReadlink).done()
	if ref, ok := r.rawRef(h.NodeId); ok {
		return []byte(r.u.tree.At(ref).Link), fuse.OK
	}
	if st := r.bridged(cancel, h.Caller, h.NodeId); !st.Ok() {
		return nil, st
	}
	return r.RawFileSystem.Readlink(cancel, h)
}

func (r *rawFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	defer r.count(opAccess).done()
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Access(cancel, in)
}

func (r *rawFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	defer r.count(opGetxattr).done()
	if r.trace != nil {
		r.trace.countXattr(attr)
	}
	if ref, ok := r.rawRef(h.NodeId); ok {
		n, errno := r.u.lowerGetxattr(ref, attr, dest)
		return n, fuse.Status(errno)
	}
	if st := r.bridged(cancel, h.Caller, h.NodeId); !st.Ok() {
		return 0, st
	}
	return r.RawFileSystem.GetXAttr(cancel, h, attr, dest)
}

func (r *rawFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	defer r.count(opListxattr).done()
	if ref, ok := r.rawRef(h.NodeId); ok {
		n, errno := r.u.lowerListxattr(ref, dest)
		return n, fuse.Status(errno)
	}
	if st := r.bridged(cancel, h.Caller, h.NodeId); !st.Ok() {
		return 0, st
	}
	return r.RawFileSystem.ListXAttr(cancel, h, dest)
}

func (r *rawFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	defer r.count(opSetxattr).done()
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (r *rawFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	defer r.count(opRemovexattr).done()
	if st := r.bridged(cancel, h.Caller, h.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.RemoveXAttr(cancel, h, attr)
}

func (r *rawFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer r.count(opCreate).done()
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Create(cancel, in, name, out)
}

func (r *rawFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	defer r.count(opTmpfile).done()
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Tmpfile(cancel, in, out)
}

func (r *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer r.count(opOpen).done()
	if r.rawOpen(in, out) {
		return fuse.OK
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	st := r.RawFileSystem.Open(cancel, in, out)
	if st.Ok() && in.Mode&fuse.OPEN_KILL_SUIDGID != 0 {
		if st = r.killSuidgid(cancel, in.InHeader, out.Fh); !st.Ok() {
			r.RawFileSystem.Release(cancel, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh, Flags: in.Flags})
		}
	}
	return st
}

func (r *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer r.count(opRead).done()
	if h, ok := r.rawHandle(in.Fh); ok {
		if h == nil {
			return nil, fuse.EBADF
		}
		res, errno := h.read(buf[:min(len(buf), int(in.Size))], int64(in.Offset))
		return res, fuse.Status(errno)
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return nil, st
	}
	return r.RawFileSystem.Read(cancel, in, buf)
}

func (r *rawFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	defer r.count(opLseek).done()
	if h, ok := r.rawHandle(in.Fh); ok {
		if h == nil {
			return fuse.EBADF
		}
		off, errno := h.lseek(in.Offset, in.Whence)
		out.Offset = off
		return fuse.Status(errno)
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Lseek(cancel, in, out)
}

func (r *rawFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	defer r.count(opGetlk).done()
	if in.Fh&rawFhBit != 0 {
		return fuse.ENOTSUP // what the bridge says: no handle of ours has locks
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.GetLk(cancel, in, out)
}

func (r *rawFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	defer r.count(opSetlk).done()
	if in.Fh&rawFhBit != 0 {
		return fuse.ENOTSUP
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.SetLk(cancel, in)
}

func (r *rawFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	defer r.count(opSetlk).done()
	if in.Fh&rawFhBit != 0 {
		return fuse.ENOTSUP
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.SetLkw(cancel, in)
}

func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	defer r.count(opRelease).done()
	if h, ok := r.rawHandle(in.Fh); ok {
		if h != nil {
			r.rawRelease(h)
		}
		return
	}
	_ = r.bridged(cancel, in.Caller, in.NodeId) // a handle's node has its Inode: opened through the bridge
	r.RawFileSystem.Release(cancel, in)
}

func (r *rawFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer r.count(opWrite).done()
	if in.Fh&rawFhBit != 0 {
		return 0, fuse.EBADF // read-only
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return 0, st
	}
	n, st := r.RawFileSystem.Write(cancel, in, data)
	if st.Ok() && in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		st = r.killSuidgid(cancel, in.InHeader, in.Fh)
	}
	return n, st
}

func (r *rawFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	t := r.timer(opWrite)
	if in.Fh&rawFhBit != 0 {
		r.count(opWrite)
		return 0, fuse.EBADF
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return 0, st
	}
	n, st := r.RawFileSystem.Writev(cancel, in, data)
	if st == fuse.ENOSYS {
		return n, st // the server copies the data and calls Write, which counts
	}
	r.count(opWrite)
	defer t.done()
	if st.Ok() && in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		st = r.killSuidgid(cancel, in.InHeader, in.Fh)
	}
	return n, st
}

func (r *rawFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	defer r.count(opCopyFileRange).done()
	if in.FhOut&rawFhBit != 0 {
		return 0, fuse.EBADF // read-only
	}
	for _, id := range []uint64{in.NodeId, in.NodeIdOut} {
		if st := r.bridged(cancel, in.Caller, id); !st.Ok() {
			return 0, st
		}
	}
	if in.FhIn&rawFhBit == 0 {
		return r.RawFileSystem.CopyFileRange(cancel, in)
	}
	// The bridge knows no raw handle: the copy goes through a read-only
	// handle of its own on the source, which the node (promoted above)
	// gives as any read-only open, so a cp of a lower file is still
	// copied in the kernel, not read and written through the server.
	if h, _ := r.rawHandle(in.FhIn); h == nil {
		return 0, fuse.EBADF
	}
	oin := fuse.OpenIn{InHeader: fuse.InHeader{NodeId: in.NodeId, Caller: in.Caller}, Flags: unix.O_RDONLY}
	var oout fuse.OpenOut
	if st := r.RawFileSystem.Open(cancel, &oin, &oout); !st.Ok() {
		return 0, st
	}
	defer r.RawFileSystem.Release(cancel, &fuse.ReleaseIn{InHeader: oin.InHeader, Fh: oout.Fh, Flags: oin.Flags})
	bin := *in
	bin.FhIn = oout.Fh
	return r.RawFileSystem.CopyFileRange(cancel, &bin)
}

func (r *rawFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	defer r.count(opIoctl).done()
	if in.Fh&rawFhBit != 0 {
		return fuse.Status(unix.ENOTTY) // what the bridge answers for an objectFile
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Ioctl(cancel, in, inbuf, out, outbuf)
}

// Flush answers ENOSYS, and the kernel sends no FLUSH again on this mount
// (fuse_flush in fs/fuse/file.c: fc->no_flush): the server has nothing to
// do at close(2) (writes are pwrite(2)s to the upper file as they come, and
// the kernel keeps POSIX locks itself), and with the writeback cache the
// kernel sends FLUSH at every close, FOPEN_NOFLUSH or not. The kernel still
// writes back a file's cached writes before close returns.
func (r *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	defer r.count(opFlush).done()
	return fuse.ENOSYS
}

func (r *rawFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer r.count(opFsync).done()
	if in.Fh&rawFhBit != 0 {
		return fuse.OK // nothing written through it
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Fsync(cancel, in)
}

func (r *rawFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer r.count(opFallocate).done()
	if in.Fh&rawFhBit != 0 {
		return fuse.EBADF // read-only
	}
	if st := r.bridged(cancel, in.Caller, in.NodeId); !st.Ok() {
		return st
	}
	return r.RawFileSystem.Fallocate(cancel, in)
}

func (r *rawFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	defer r.count(opStatfs).done()
	// The answer is the mount's, whatever the node: the root's needs
	// no promotion.
	rh := *h
	rh.NodeId = fuse.FUSE_ROOT_ID
	return r.RawFileSystem.StatFs(cancel, &rh, out)
}

func (r *rawFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	defer r.count(opStatx).done()
	if r.u.raw.needsPromotion(in.NodeId) || in.Fh&rawFhBit != 0 {
		return fuse.ENOSYS // what the bridge answers: no node has Statx
	}
	return r.RawFileSystem.Statx(cancel, in, out)
}
