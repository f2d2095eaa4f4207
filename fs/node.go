package fs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// node is one inode of the mount, of any type. Nodes hold no copy of mutable
// state: whether a lower inode has an upper copy, or a lower directory still
// merges, are facts of the union that only ever become true, so a node made
// by a lookup that raced with a copy-up is as good as any.
type node struct {
	gofs.Inode

	u   *union
	ino uint64
	// lower is the tree entry this inode came from, when it sits at that
	// entry's path: its attributes while it has no upper copy, the lower
	// directory it merges while it merges one. 0 for inodes the mount made.
	// A reference, not the entry: a walk makes an inode of every entry, and
	// the tree (shared by every mount of the image) holds the entry itself.
	lower layerstore.Ref
	// What few nodes have at a time (a lock, passthrough handles, open
	// upper files) is in the union's tables (nodestate.go).
}

// hasUpper reports whether the inode lives in the upper dir.
func (n *node) hasUpper() bool { return n.lower == 0 || n.u.isCopied(n.ino) }

// merged reports whether a directory shows the lower directory of its path.
func (n *node) merged() bool {
	return n.lower != 0 && n.u.tree.TypeAt(n.lower) == layerstore.TypeDir && !n.u.isUnmerged(n.ino)
}

// lowerEntry decodes n's tree entry (nil for inodes the mount made).
func (n *node) lowerEntry() *layerstore.Entry { return n.u.tree.At(n.lower) }

// lowerPath is the path of n's tree entry.
func (n *node) lowerPath() string { return n.u.tree.PathAt(n.lower) }

func (n *node) isDir() bool { return n.StableAttr().Mode == syscall.S_IFDIR }
func (n *node) isReg() bool { return n.StableAttr().Mode == syscall.S_IFREG }

// newChild makes the node of a child entry (not yet known to go-fuse).
func (n *node) newChild(ctx context.Context, ino uint64, lower *layerstore.Entry, mode uint32) *gofs.Inode {
	c := &node{u: n.u, ino: ino, lower: lower.Ref()}
	in := n.NewInode(ctx, c, gofs.StableAttr{Mode: mode & syscall.S_IFMT, Ino: ino})
	if lower != nil && mode&syscall.S_IFMT == syscall.S_IFREG {
		if c, ok := in.Operations().(*node); ok {
			// Raw handles open on it read through it now (rawfile.go).
			// go-fuse keeps an Inode it has of ino and drops this one,
			// but then that Inode was made while the file was copied or
			// promoted, when no raw open could start: bindRaw finds the
			// handles bound to it already, or none.
			n.u.bindRaw(c)
		}
	}
	return in
}

// attrFromStat fills a from the lstat of an upper entry.
func attrFromStat(st *unix.Stat_t, a *fuse.Attr) {
	a.Ino = st.Ino
	a.Size = uint64(st.Size)
	a.Blocks = uint64(st.Blocks)
	a.Atime, a.Atimensec = uint64(st.Atim.Sec), uint32(st.Atim.Nsec)
	a.Mtime, a.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
	a.Ctime, a.Ctimensec = uint64(st.Ctim.Sec), uint32(st.Ctim.Nsec)
	a.Mode = st.Mode
	a.Nlink = uint32(st.Nlink)
	a.Uid, a.Gid = st.Uid, st.Gid
	a.Rdev = uint32(st.Rdev)
	a.Blksize = uint32(st.Blksize)
}

// lowerAttr fills a from a tree entry.
func lowerAttr(e *layerstore.Entry, a *fuse.Attr) {
	a.Ino = e.Ino
	a.Mode = e.UnixMode()
	a.Nlink = max(e.Nlink, 1)
	a.Uid, a.Gid = e.UID, e.GID
	switch e.Type {
	case layerstore.TypeReg:
		a.Size = uint64(e.Size)
	case layerstore.TypeSymlink:
		a.Size = uint64(len(e.Link))
	case layerstore.TypeDir:
		a.Size = 4096
	case layerstore.TypeChar, layerstore.TypeBlock:
		a.Rdev = mkdev(e.Devmajor, e.Devminor)
	}
	ts := nsToTimespec(e.Mtime)
	a.Atime, a.Mtime, a.Ctime = uint64(ts.Sec), uint64(ts.Sec), uint64(ts.Sec)
	a.Atimensec, a.Mtimensec, a.Ctimensec = uint32(ts.Nsec), uint32(ts.Nsec), uint32(ts.Nsec)
	a.Blksize = 4096
	a.Blocks = (a.Size + 4095) / 4096 * 8
}

var _ = (gofs.NodeGetattrer)((*node)(nil))

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.hasUpper() {
		lowerAttr(n.lowerEntry(), &out.Attr)
		out.SetTimeout(lowerTimeout)
		return 0
	}
	out.SetTimeout(upperTimeout)
	if uf, ok := asUpper(f); ok {
		st, err := fstat(uf.fd)
		if err != nil {
			return toErrno(err)
		}
		n.u.fillUpperAttr(n, &st, "", false, &out.Attr)
		return 0
	}
	n.u.nsMu.RLock()
	defer n.u.nsMu.RUnlock()
	p, st, err := n.u.upperStat(n)
	if err != nil {
		r, ok := n.holdFd()
		if !ok {
			return toErrno(err)
		}
		st, err = fstat(r.fd)
		r.drop()
		if err != nil {
			return toErrno(err)
		}
		n.u.fillUpperAttr(n, &st, "", false, &out.Attr)
		return 0
	}
	n.u.fillUpperAttr(n, &st, p, true, &out.Attr)
	return 0
}

var _ = (gofs.NodeSetattrer)((*node)(nil))

func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	u := n.u
	if u.ro {
		return syscall.EROFS
	}
	if n.flushesLowerTimes(in) {
		lowerAttr(n.lowerEntry(), &out.Attr)
		out.SetTimeout(lowerTimeout)
		return 0
	}
	if setsNothing(in) {
		return n.setattrNothing(ctx, f, in, out) // privs.go
	}
	size, hasSize := in.GetSize()
	if hasSize && n.isReg() {
		n.lock()
		errno := n.copyUpForTruncate(size)
		n.unlock()
		if errno != 0 {
			return errno
		}
	} else if errno := n.copyUpMeta(); errno != 0 {
		return errno
	}

	// Apply the change through the handle it came with, else through
	// another open handle or a descriptor of the upper entry.
	symlink := n.isSymlink()
	var st unix.Stat_t
	apply := func(fd int) error {
		if errno := setattr(fd, symlink, in); errno != 0 {
			return errno
		}
		var err error
		st, err = fstat(fd)
		return err
	}
	var errno syscall.Errno
	if uf, ok := asUpper(f); ok {
		errno = toErrno(apply(uf.fd))
	} else {
		errno = n.withUpper(apply)
	}
	if errno != 0 {
		return errno
	}
	if n.isDir() {
		return n.Getattr(ctx, nil, out) // a merged directory's link count
	}
	n.u.fillUpperAttr(n, &st, "", false, &out.Attr)
	out.SetTimeout(upperTimeout)
	return 0
}

// flushesLowerTimes reports whether in is the writeback cache's flush of
// the times the kernel holds (fuse_flush_times: mtime, and ctime, which
// nothing sets) to a lower file that lost its name without an upper copy,
// with the mtime the file has: the kernel sends one after an unlink or a
// rename over the file, and at its close. That is no change. Copying the
// file up would fail (its path is a whiteout or another file now), and so
// would close(2). A change to such a file fails with EEXIST, as on
// overlayfs.
func (n *node) flushesLowerTimes(in *fuse.SetAttrIn) bool {
	if in.Valid&^(fuse.FATTR_FH|fuse.FATTR_LOCKOWNER|fuse.FATTR_CTIME) != fuse.FATTR_MTIME || n.hasUpper() {
		return false
	}
	if _, parent := n.Parent(); parent != nil {
		return false
	}
	ts := nsToTimespec(n.lowerEntry().Mtime)
	return int64(in.Mtime) == ts.Sec && int64(in.Mtimensec) == ts.Nsec
}

func (n *node) isSymlink() bool { return n.StableAttr().Mode == syscall.S_IFLNK }

// setattr applies a SETATTR to the upper entry open as fd: an open file or
// an O_PATH descriptor (the f* calls refuse those, /proc/self/fd takes
// them). Owner first: chown clears setuid bits that a mode in the same
// request sets.
func setattr(fd int, symlink bool, in *fuse.SetAttrIn) syscall.Errno {
	uid, gid := -1, -1
	if v, ok := in.GetUID(); ok {
		uid = int(v)
	}
	if v, ok := in.GetGID(); ok {
		gid = int(v)
	}
	if uid >= 0 || gid >= 0 {
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return toErrno(err)
		}
	}
	if m, ok := in.GetMode(); ok && !symlink {
		if err := fchmodFd(fd, m&0o7777); err != nil {
			return toErrno(err)
		}
	}
	if sz, ok := in.GetSize(); ok {
		err := unix.Ftruncate(fd, int64(sz))
		if err == unix.EBADF || err == unix.EINVAL {
			err = unix.Truncate(procPath(fd), int64(sz)) // O_PATH, or open read-only
		}
		if err != nil {
			return toErrno(err)
		}
	}
	if ts, ok := setattrTimes(in); ok {
		if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
			return toErrno(err)
		}
	}
	return 0
}

// setattrTimes converts the times of a SETATTR, with UTIME_NOW and
// UTIME_OMIT as the kernel means them.
func setattrTimes(in *fuse.SetAttrIn) ([]unix.Timespec, bool) {
	v := in.Valid
	if v&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) == 0 {
		return nil, false
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if v&fuse.FATTR_ATIME != 0 {
		if v&fuse.FATTR_ATIME_NOW != 0 {
			ts[0] = unix.Timespec{Nsec: unix.UTIME_NOW}
		} else {
			ts[0] = unix.Timespec{Sec: int64(in.Atime), Nsec: int64(in.Atimensec)}
		}
	}
	if v&fuse.FATTR_MTIME != 0 {
		if v&fuse.FATTR_MTIME_NOW != 0 {
			ts[1] = unix.Timespec{Nsec: unix.UTIME_NOW}
		} else {
			ts[1] = unix.Timespec{Sec: int64(in.Mtime), Nsec: int64(in.Mtimensec)}
		}
	}
	return ts, true
}

// withUpper runs fn on a descriptor of the upper entry of n: an open
// handle of n when there is one (it may have no name left), else an O_PATH
// descriptor of the entry, opened under nsMu shared.
func (n *node) withUpper(fn func(fd int) error) syscall.Errno {
	if err, ok := n.withOpenFile(fn); ok {
		return toErrno(err)
	}
	n.u.nsMu.RLock()
	defer n.u.nsMu.RUnlock()
	fd, err := n.u.openUpperOf(n, unix.O_PATH)
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(fd)
	return toErrno(fn(fd))
}

var _ = (gofs.NodeGetxattrer)((*node)(nil))

// Getxattr answers from the tree record for lower entries (no lock, no
// allocation: ls -l asks of every entry) and from the upper file else.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if reservedXattr(attr) {
		return 0, syscall.ENODATA
	}
	if !n.hasUpper() {
		return n.u.lowerGetxattr(n.lower, attr, dest)
	}
	var v []byte
	errno := n.withUpper(func(fd int) (err error) {
		v, err = fgetxattr(fd, attr)
		return err
	})
	if errno == syscall.ENODATA {
		return 0, n.u.noXattr(attr)
	}
	if errno != 0 {
		return 0, errno
	}
	return xattrReply(v, dest)
}

var _ = (gofs.NodeListxattrer)((*node)(nil))

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if !n.hasUpper() {
		return n.u.lowerListxattr(n.lower, dest)
	}
	var names []string
	errno := n.withUpper(func(fd int) (err error) {
		names, err = flistxattr(fd)
		return err
	})
	if errno != 0 {
		return 0, errno
	}
	return listxattrReply(slices.DeleteFunc(names, reservedXattr), dest)
}

// lowerGetxattr answers a GETXATTR of lower entry r from its tree record.
func (u *union) lowerGetxattr(r layerstore.Ref, attr string, dest []byte) (uint32, syscall.Errno) {
	if reservedXattr(attr) {
		return 0, syscall.ENODATA
	}
	v, ok := u.tree.XattrAt(r, attr)
	if !ok {
		return 0, u.noXattr(attr)
	}
	return xattrReplyString(v, dest)
}

// lowerListxattr answers a LISTXATTR of lower entry r.
func (u *union) lowerListxattr(r layerstore.Ref, dest []byte) (uint32, syscall.Errno) {
	var names []string
	for k := range u.tree.At(r).Xattrs {
		if !reservedXattr(k) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return listxattrReply(names, dest)
}

// listxattrReply answers a LISTXATTR with names.
func listxattrReply(names []string, dest []byte) (uint32, syscall.Errno) {
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte(0)
	}
	return xattrReply([]byte(b.String()), dest)
}

var _ = (gofs.NodeSetxattrer)((*node)(nil))

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if reservedXattr(attr) {
		return syscall.EPERM
	}
	if n.u.ro {
		return syscall.EROFS
	}
	if attr == selinuxXattr {
		n.u.labels.Store(true)
		// Kept for a mount that resumes this upper dir (see noXattr),
		// before the label is: a crash leaves the mark, never the label alone.
		if err := fsetxattr(n.u.rootFd, XattrPrefix+markLabels, []byte("y"), 0); err != nil {
			return toErrno(err)
		}
	}
	if errno := n.copyUpMeta(); errno != 0 {
		return errno
	}
	return n.withUpper(func(fd int) error { return fsetxattr(fd, attr, data, int(flags)) })
}

var _ = (gofs.NodeRemovexattrer)((*node)(nil))

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if reservedXattr(attr) {
		return syscall.ENODATA
	}
	if n.u.ro {
		return syscall.EROFS
	}
	if !n.hasUpper() {
		if _, ok := n.lowerEntry().Xattrs[attr]; !ok {
			return syscall.ENODATA
		}
	}
	if errno := n.copyUpMeta(); errno != 0 {
		return errno
	}
	errno := n.withUpper(func(fd int) error { return fremovexattr(fd, attr) })
	if errno == 0 && attr == capXattr {
		n.u.capDropped(ctx, n) // privs.go
	}
	return errno
}

var _ = (gofs.NodeReadlinker)((*node)(nil))

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if !n.hasUpper() {
		return []byte(n.lowerEntry().Link), 0
	}
	var target string
	errno := n.withUpper(func(fd int) (err error) {
		target, err = readlinkAt(fd, "")
		return err
	})
	return []byte(target), errno
}

var _ = (gofs.NodeStatfser)((*node)(nil))

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	n.u.nsMu.RLock()
	var err error
	switch {
	case n.u.rootFd >= 0:
		err = syscall.Fstatfs(n.u.rootFd, &st)
	case n.u.objDir != "":
		err = syscall.Statfs(n.u.objDir, &st)
	default:
		n.u.nsMu.RUnlock()
		return 0
	}
	n.u.nsMu.RUnlock()
	if err != nil {
		return toErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

var _ = (gofs.NodeOnForgetter)((*node)(nil))

func (n *node) OnForget() {
	n.u.dropPending(n.EmbeddedInode())
	n.unpin()
}

// isNotExist reports whether err says a path is missing.
func isNotExist(err error) bool { return errors.Is(err, unix.ENOENT) }
