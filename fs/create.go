package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// newEntry is where a create puts its entry: the upper directory (open
// O_PATH, release with closeDir) and the name in it.
type newEntry struct {
	path     string // merged path
	dir      int
	name     string
	hidesDir bool // the name hides a lower directory: a new directory there is opaque
}

// prepareCreate readies the upper dir for a new entry name in directory n:
// n gets an upper copy and a whiteout under the name goes. Callers hold
// nsMu exclusively and release the result's dir with closeDir.
func (n *node) prepareCreate(name string) (newEntry, syscall.Errno) {
	u := n.u
	if u.ro {
		return newEntry{}, syscall.EROFS
	}
	if len(name) > nameMax {
		return newEntry{}, syscall.ENAMETOOLONG
	}
	if !n.hasUpper() {
		if err := u.ensureDir(n.lowerPath()); err != nil {
			return newEntry{}, u.errno(err, "copy up", n.lowerPath())
		}
	}
	dp, errno := n.dirPath()
	if errno != 0 {
		return newEntry{}, errno
	}
	c, err := u.lookupChild(n, dp, name)
	if err != nil {
		return newEntry{}, u.errno(err, "lookup", joinPath(dp, name))
	}
	if c.exists {
		return newEntry{}, syscall.EEXIST
	}
	dfd, err := u.openDir(dp)
	if err != nil {
		return newEntry{}, u.errno(err, "open", dp)
	}
	if c.whiteout {
		if err := unix.Unlinkat(dfd, name, 0); err != nil {
			u.closeDir(dfd)
			return newEntry{}, toErrno(err)
		}
	}
	ne := newEntry{path: c.path, dir: dfd, name: name}
	if n.merged() {
		if e, ok := u.tree.ChildAt(n.lower, name); ok && e.Type == layerstore.TypeDir {
			ne.hidesDir = true
		}
	}
	return ne, 0
}

// owner returns the owner and mode of a new entry made by the caller of ctx
// in the upper directory open as dirfd: a setgid directory passes on its
// group, and to directories its setgid bit.
func owner(ctx context.Context, dirfd int, dir bool, mode uint32) (int, int, uint32) {
	uid, gid := 0, 0
	if c, ok := fuse.FromContext(ctx); ok {
		uid, gid = int(c.Uid), int(c.Gid)
	}
	if st, err := fstat(dirfd); err == nil && st.Mode&unix.S_ISGID != 0 {
		gid = int(st.Gid)
		if dir {
			mode |= unix.S_ISGID
		}
	}
	return uid, gid, mode & 0o7777
}

// finishCreate gives the new upper entry ne its owner and mode, an inode
// number, and fills out. Callers hold nsMu exclusively.
func (n *node) finishCreate(ctx context.Context, ne newEntry, mode uint32, out *fuse.EntryOut) (*node, syscall.Errno) {
	u := n.u
	st, err := fstatat(ne.dir, ne.name)
	if err != nil {
		return nil, toErrno(err)
	}
	uid, gid, perm := owner(ctx, ne.dir, st.Mode&unix.S_IFMT == unix.S_IFDIR, mode)
	if err := unix.Fchownat(ne.dir, ne.name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		_ = removeEntry(ne.dir, ne.name, &st)
		return nil, toErrno(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// Not a symlink, and nsMu keeps it so: fchmodat may follow.
		if err := unix.Fchmodat(ne.dir, ne.name, perm, 0); err != nil {
			_ = removeEntry(ne.dir, ne.name, &st)
			return nil, toErrno(err)
		}
	}
	if st, err = fstatat(ne.dir, ne.name); err != nil {
		return nil, toErrno(err)
	}
	c := &node{u: u, ino: u.newIno()}
	u.setIno(&st, c.ino)
	u.fillUpperAttr(c, &st, ne.path, false, &out.Attr)
	out.SetEntryTimeout(upperTimeout)
	out.SetAttrTimeout(upperTimeout)
	return c, 0
}

func removeEntry(dirfd int, name string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	}
	return unix.Unlinkat(dirfd, name, 0)
}

var _ = (gofs.NodeMkdirer)((*node)(nil))

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	u := n.u
	u.lockNS()
	defer u.unlockNS()
	ne, errno := n.prepareCreate(name)
	if errno != 0 {
		return nil, errno
	}
	defer u.closeDir(ne.dir)
	if err := unix.Mkdirat(ne.dir, ne.name, 0o700); err != nil {
		return nil, toErrno(err)
	}
	if ne.hidesDir {
		if err := setOpaque(ne.dir, ne.name); err != nil {
			_ = unix.Unlinkat(ne.dir, ne.name, unix.AT_REMOVEDIR)
			return nil, u.errno(err, "mkdir", ne.path)
		}
	}
	c, errno := n.finishCreate(ctx, ne, mode, out)
	if errno != 0 {
		return nil, errno
	}
	return n.NewInode(ctx, c, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: c.ino}), 0
}

var _ = (gofs.NodeMknoder)((*node)(nil))

func (n *node) Mknod(ctx context.Context, name string, mode uint32, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	u := n.u
	u.lockNS()
	defer u.unlockNS()
	ne, errno := n.prepareCreate(name)
	if errno != 0 {
		return nil, errno
	}
	defer u.closeDir(ne.dir)
	if err := unix.Mknodat(ne.dir, ne.name, mode&unix.S_IFMT|0o600, int(rdev)); err != nil {
		return nil, toErrno(err)
	}
	c, errno := n.finishCreate(ctx, ne, mode, out)
	if errno != 0 {
		return nil, errno
	}
	return n.NewInode(ctx, c, gofs.StableAttr{Mode: mode & syscall.S_IFMT, Ino: c.ino}), 0
}

var _ = (gofs.NodeSymlinker)((*node)(nil))

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	u := n.u
	u.lockNS()
	defer u.unlockNS()
	ne, errno := n.prepareCreate(name)
	if errno != 0 {
		return nil, errno
	}
	defer u.closeDir(ne.dir)
	if err := unix.Symlinkat(target, ne.dir, ne.name); err != nil {
		return nil, toErrno(err)
	}
	c, errno := n.finishCreate(ctx, ne, 0o777, out)
	if errno != 0 {
		return nil, errno
	}
	return n.NewInode(ctx, c, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: c.ino}), 0
}

var _ = (gofs.NodeCreater)((*node)(nil))

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	u.lockNS()
	defer u.unlockNS()
	ne, errno := n.prepareCreate(name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer u.closeDir(ne.dir)
	fd, err := openat(ne.dir, ne.name, int(upperOpenFlags(flags))|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	c, errno := n.finishCreate(ctx, ne, mode, out)
	if errno != 0 {
		unix.Close(fd)
		return nil, nil, 0, errno
	}
	in := n.NewInode(ctx, c, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: c.ino})
	return in, c.upperHandle(newUpperFile(c, fd, flags&unix.O_ACCMODE != unix.O_RDONLY)), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

var _ = (gofs.NodeTmpfiler)((*node)(nil))

func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	if u.ro {
		return nil, nil, 0, syscall.EROFS
	}
	u.lockNS()
	defer u.unlockNS()
	if !n.hasUpper() {
		if err := u.ensureDir(n.lowerPath()); err != nil {
			return nil, nil, 0, u.errno(err, "copy up", n.lowerPath())
		}
	}
	dp, errno := n.dirPath()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	dfd, err := u.openDir(dp)
	if err != nil {
		return nil, nil, 0, u.errno(err, "open", dp)
	}
	defer u.closeDir(dfd)
	fd, err := openat(dfd, ".", int(upperOpenFlags(flags))|unix.O_TMPFILE, 0o600)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	uid, gid, perm := owner(ctx, dfd, false, mode)
	if err := unix.Fchown(fd, uid, gid); err == nil {
		err = unix.Fchmod(fd, perm)
	}
	st, err := fstat(fd)
	if err != nil {
		unix.Close(fd)
		return nil, nil, 0, toErrno(err)
	}
	c := &node{u: u, ino: u.newIno()}
	u.setIno(&st, c.ino)
	// No name: kept until the kernel forgets it, as an unlinked file is
	// (remove), not only while this handle is open.
	if pfd, err := openat(unix.AT_FDCWD, procPath(fd), unix.O_PATH|unix.O_CLOEXEC, 0); err == nil {
		c.pin(pfd)
	}
	u.fillUpperAttr(c, &st, "", false, &out.Attr)
	out.SetEntryTimeout(upperTimeout)
	out.SetAttrTimeout(upperTimeout)
	in := n.NewInode(ctx, c, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: c.ino})
	return in, c.upperHandle(newUpperFile(c, fd, flags&unix.O_ACCMODE != unix.O_RDONLY)), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

var _ = (gofs.NodeLinker)((*node)(nil))

func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	u := n.u
	t, ok := target.(*node)
	if !ok || t.u != u {
		return nil, syscall.EXDEV
	}
	if u.ro {
		return nil, syscall.EROFS
	}
	u.lockNS()
	defer u.unlockNS()
	if !t.hasUpper() {
		if err := u.copyUpEntry(t.lowerEntry()); err != nil {
			return nil, u.errno(err, "copy up", t.lowerPath())
		}
	}
	// The target through a descriptor: its upper entry's, or for a file
	// without a name (O_TMPFILE, unlinked), a held one.
	tfd, err := u.openUpperOf(t, unix.O_PATH)
	if err == nil {
		defer unix.Close(tfd)
	} else {
		r, ok := t.holdFd()
		if !ok {
			return nil, toErrno(err)
		}
		defer r.drop()
		tfd = r.fd
	}
	ne, errno := n.prepareCreate(name)
	if errno != 0 {
		return nil, errno
	}
	defer u.closeDir(ne.dir)
	// AT_SYMLINK_FOLLOW follows the magic link to the file itself.
	if err := unix.Linkat(unix.AT_FDCWD, procPath(tfd), ne.dir, ne.name, unix.AT_SYMLINK_FOLLOW); err != nil {
		return nil, toErrno(err)
	}
	st, err := fstatat(ne.dir, ne.name)
	if err != nil {
		return nil, toErrno(err)
	}
	u.fillUpperAttr(t, &st, ne.path, true, &out.Attr)
	out.SetEntryTimeout(upperTimeout)
	out.SetAttrTimeout(upperTimeout)
	return t.EmbeddedInode(), 0
}
