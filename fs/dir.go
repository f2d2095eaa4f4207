package fs

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// child is what a name in a directory is in the merged view.
type child struct {
	path     string
	exists   bool
	upper    bool        // the upper dir has it (st is its lstat)
	st       unix.Stat_t //
	ino      uint64
	lower    *layerstore.Entry // the tree entry it came from, when it sits at that entry's path
	whiteout bool              // the upper dir has a whiteout for it
}

func (c *child) isDir() bool {
	if c.upper {
		return c.st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	return c.lower != nil && c.lower.Type == layerstore.TypeDir
}

func (c *child) mode() uint32 {
	if c.upper {
		return c.st.Mode
	}
	return c.lower.UnixMode()
}

// merged reports whether a directory child shows the lower directory of
// its path.
func (u *union) childMerged(c *child) bool {
	return c.lower != nil && c.lower.Type == layerstore.TypeDir && !u.isUnmerged(c.lower.Ino)
}

// dirPath returns the merged path of directory n. Callers hold nsMu.
func (n *node) dirPath() (string, syscall.Errno) {
	p, ok := n.u.pathOf(n)
	if !ok {
		return "", syscall.ENOENT
	}
	return p, 0
}

// lookupChild resolves name in directory n at merged path dp. Callers hold
// nsMu unless n has no upper copy.
func (u *union) lookupChild(n *node, dp, name string) (child, error) {
	c := child{path: joinPath(dp, name)}
	merged := n.merged()
	if n.hasUpper() {
		dfd, err := u.openDir(dp)
		if err != nil {
			return c, &os.PathError{Op: "open", Path: dp, Err: err}
		}
		defer u.closeDir(dfd)
		st, err := fstatat(dfd, name)
		switch {
		case err == nil:
			wo, err := isWhiteout(dfd, name, &st)
			if err != nil {
				return c, err
			}
			if wo {
				c.whiteout = true
				return c, nil
			}
			c.exists, c.upper, c.st = true, true, st
			c.ino = u.inoOf(&st)
			if merged {
				if e, ok := u.tree.Child(n.lower.Path, name); ok && e.Ino == c.ino {
					c.lower = e
				}
			}
			return c, nil
		case !errors.Is(err, unix.ENOENT):
			return c, &os.PathError{Op: "lstat", Path: c.path, Err: err}
		}
	}
	if merged {
		if e, ok := u.tree.Child(n.lower.Path, name); ok {
			c.exists, c.lower, c.ino = true, e, e.Ino
		}
	}
	return c, nil
}

// entryOut fills out for child c of directory n.
func (n *node) entryOut(c *child, out *fuse.EntryOut) {
	if !c.upper {
		lowerAttr(c.lower, &out.Attr)
		out.SetEntryTimeout(lowerTimeout)
		out.SetAttrTimeout(lowerTimeout)
		return
	}
	cn := &node{u: n.u, ino: c.ino, lower: c.lower}
	n.u.fillUpperAttr(cn, &c.st, c.path, true, &out.Attr)
	out.SetEntryTimeout(upperTimeout)
	out.SetAttrTimeout(upperTimeout)
}

// fillUpperAttr fills a from the lstat of n's upper entry at merged path p
// (havePath false: reached by descriptor, path unknown).
func (u *union) fillUpperAttr(n *node, st *unix.Stat_t, p string, havePath bool, a *fuse.Attr) {
	attrFromStat(st, a)
	a.Ino = n.ino
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if u.metacopyOf(n.ino) != nil {
			// The placeholder holds no data; show what the data takes.
			a.Blocks = (a.Size + 4095) / 4096 * 8
		}
	case unix.S_IFDIR:
		if havePath && n.merged() {
			if c, err := u.countSubdirs(n, p); err == nil {
				a.Nlink = 2 + c
			} else {
				a.Nlink = 1
			}
		}
	}
}

var _ = (gofs.NodeLookuper)((*node)(nil))

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	u := n.u
	if len(name) > nameMax {
		return nil, syscall.ENAMETOOLONG // as the upper file system would say
	}
	if !n.hasUpper() {
		// A lower directory nothing was changed in: the tree answers.
		e, ok := u.tree.Child(n.lower.Path, name)
		if !ok {
			return nil, syscall.ENOENT
		}
		if !u.isCopied(e.Ino) {
			lowerAttr(e, &out.Attr)
			out.SetEntryTimeout(lowerTimeout)
			out.SetAttrTimeout(lowerTimeout)
			return n.newChild(ctx, e.Ino, e, e.UnixMode()), 0
		}
	}
	u.nsMu.RLock()
	defer u.nsMu.RUnlock()
	dp, errno := n.dirPath()
	if errno != 0 {
		return nil, errno
	}
	c, err := u.lookupChild(n, dp, name)
	if err != nil {
		return nil, u.errno(err, "lookup", joinPath(dp, name))
	}
	if !c.exists {
		return nil, syscall.ENOENT
	}
	n.entryOut(&c, out)
	return n.newChild(ctx, c.ino, c.lower, c.mode()), 0
}

// listing is one entry of a merged directory listing.
type listing struct {
	name string
	ino  uint64
	mode uint32 // type bits
}

// list returns the merged entries of directory n at merged path dp, sorted
// by name. Callers hold nsMu unless n has no upper copy.
func (u *union) list(n *node, dp string) ([]listing, error) {
	var lowerKids []*layerstore.Entry
	if n.merged() {
		lowerKids = u.tree.Children(n.lower.Path)
	}
	if !n.hasUpper() {
		out := make([]listing, 0, len(lowerKids))
		for _, e := range lowerKids {
			out = append(out, listing{name: e.Name(), ino: e.Ino, mode: e.UnixMode() & unix.S_IFMT})
		}
		return out, nil
	}
	return u.listUpper(dp, lowerKids)
}

// listUpper merges the upper directory at merged path dp with the lower
// entries that show through it (lowerKids, sorted). Callers hold nsMu.
func (u *union) listUpper(dp string, lowerKids []*layerstore.Entry) ([]listing, error) {
	dfd, err := u.openDir(dp)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dp, Err: err}
	}
	defer u.closeDir(dfd)
	ents, err := readDirents(dfd, ".")
	if err != nil {
		return nil, &os.PathError{Op: "readdir", Path: dp, Err: err}
	}
	shadow := make(map[string]bool, len(ents))
	out := make([]listing, 0, len(ents)+len(lowerKids))
	for _, d := range ents {
		shadow[d.name] = true
		st, err := fstatat(dfd, d.name)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if maybeWhiteout(&st) {
			wo, err := isWhiteout(dfd, d.name, &st)
			if err != nil {
				return nil, err
			}
			if wo {
				continue
			}
		}
		out = append(out, listing{name: d.name, ino: u.inoOf(&st), mode: st.Mode & unix.S_IFMT})
	}
	for _, e := range lowerKids {
		if !shadow[e.Name()] {
			out = append(out, listing{name: e.Name(), ino: e.Ino, mode: e.UnixMode() & unix.S_IFMT})
		}
	}
	slices.SortFunc(out, func(a, b listing) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// countSubdirs counts the subdirectories of merged directory n at dp, for
// its link count. Callers hold nsMu.
func (u *union) countSubdirs(n *node, dp string) (uint32, error) {
	l, err := u.list(n, dp)
	if err != nil {
		return 0, err
	}
	var c uint32
	for _, e := range l {
		if e.mode == unix.S_IFDIR {
			c++
		}
	}
	return c, nil
}

var _ = (gofs.NodeOpendirHandler)((*node)(nil))

// OpendirHandle opens a directory. The listing is taken at the first read
// and again on rewind; the kernel may cache it (FOPEN_CACHE_DIR), since
// every change to a directory goes through the kernel, which drops its
// cache when it makes one.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{n: n}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle is an open directory.
type dirHandle struct {
	n       *node
	mu      sync.Mutex
	entries []fuse.DirEntry // nil until read
	idx     int
}

var (
	_ = (gofs.FileReaddirenter)((*dirHandle)(nil))
	_ = (gofs.FileSeekdirer)((*dirHandle)(nil))
	_ = (gofs.FileReleasedirer)((*dirHandle)(nil))
	_ = (gofs.FileFsyncdirer)((*dirHandle)(nil))
)

func (d *dirHandle) load() syscall.Errno {
	n, u := d.n, d.n.u
	var l []listing
	var err error
	if !n.hasUpper() {
		l, err = u.list(n, n.lower.Path)
	} else {
		u.nsMu.RLock()
		dp, errno := n.dirPath()
		if errno != 0 {
			u.nsMu.RUnlock()
			return errno
		}
		l, err = u.list(n, dp)
		u.nsMu.RUnlock()
	}
	if err != nil {
		return u.errno(err, "readdir", "")
	}
	parent := n.ino
	if _, p := n.Parent(); p != nil {
		parent = p.StableAttr().Ino
	}
	ents := make([]fuse.DirEntry, 0, len(l)+2)
	ents = append(ents,
		fuse.DirEntry{Name: ".", Ino: n.ino, Mode: syscall.S_IFDIR},
		fuse.DirEntry{Name: "..", Ino: parent, Mode: syscall.S_IFDIR})
	for _, e := range l {
		ents = append(ents, fuse.DirEntry{Name: e.name, Ino: e.ino, Mode: e.mode})
	}
	d.entries = ents
	return 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.entries == nil {
		if errno := d.load(); errno != 0 {
			return nil, errno
		}
	}
	if d.idx >= len(d.entries) {
		return nil, 0
	}
	e := d.entries[d.idx]
	d.idx++
	e.Off = uint64(d.idx)
	return &e, 0
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == 0 {
		d.entries = nil // rewinddir shows changes made since opendir
	} else {
		// The kernel continues a listing it cached in part on a new
		// handle, at the offset where its cache ends.
		if d.entries == nil {
			if errno := d.load(); errno != 0 {
				return errno
			}
		}
		if off > uint64(len(d.entries)) {
			return syscall.EINVAL
		}
	}
	d.idx = int(off)
	return 0
}

func (d *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno { return 0 }

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
		if err := u.ensureDir(n.lower.Path); err != nil {
			return newEntry{}, u.errno(err, "copy up", n.lower.Path)
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
		if e, ok := u.tree.Child(n.lower.Path, name); ok && e.Type == layerstore.TypeDir {
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
	u.nsMu.Lock()
	defer u.nsMu.Unlock()
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
	u.nsMu.Lock()
	defer u.nsMu.Unlock()
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
	u.nsMu.Lock()
	defer u.nsMu.Unlock()
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
	u.nsMu.Lock()
	defer u.nsMu.Unlock()
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
	return in, newUpperFile(c, fd), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

var _ = (gofs.NodeTmpfiler)((*node)(nil))

func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	if u.ro {
		return nil, nil, 0, syscall.EROFS
	}
	u.nsMu.Lock()
	defer u.nsMu.Unlock()
	if !n.hasUpper() {
		if err := u.ensureDir(n.lower.Path); err != nil {
			return nil, nil, 0, u.errno(err, "copy up", n.lower.Path)
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
	u.fillUpperAttr(c, &st, "", false, &out.Attr)
	out.SetEntryTimeout(upperTimeout)
	out.SetAttrTimeout(upperTimeout)
	in := n.NewInode(ctx, c, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: c.ino})
	return in, newUpperFile(c, fd), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
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
	u.nsMu.Lock()
	defer u.nsMu.Unlock()
	if !t.hasUpper() {
		if err := u.copyUpEntry(t.lower); err != nil {
			return nil, u.errno(err, "copy up", t.lower.Path)
		}
	}
	// The target through a descriptor: its upper entry's, or for a file
	// without a name (O_TMPFILE), an open handle's.
	tfd, err := u.openUpperOf(t, unix.O_PATH)
	if err != nil {
		fd, ok := t.anyFd()
		if !ok {
			return nil, toErrno(err)
		}
		if tfd, err = unix.Dup(fd); err != nil {
			return nil, toErrno(err)
		}
	}
	defer unix.Close(tfd)
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

var _ = (gofs.NodeUnlinker)((*node)(nil))

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, false)
}

var _ = (gofs.NodeRmdirer)((*node)(nil))

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, true)
}

// remove unlinks or rmdirs name in directory n: the upper entry goes, and a
// whiteout hides the lower one.
func (n *node) remove(name string, dir bool) syscall.Errno {
	u := n.u
	if u.ro {
		return syscall.EROFS
	}
	u.nsMu.Lock()
	defer u.nsMu.Unlock()
	dp, errno := n.dirPath()
	if errno != 0 {
		return errno
	}
	c, err := u.lookupChild(n, dp, name)
	if err != nil {
		return u.errno(err, "lookup", joinPath(dp, name))
	}
	if !c.exists {
		return syscall.ENOENT
	}
	if c.isDir() != dir {
		if dir {
			return syscall.ENOTDIR
		}
		return syscall.EISDIR
	}
	if dir {
		if errno := u.checkEmpty(&c); errno != 0 {
			return errno
		}
	} else if !c.upper && c.lower.Nlink > 1 {
		// The other names of a hard-link group keep a true link count.
		if err := u.copyUpFile(c.lower, true); err != nil {
			return u.errno(err, "copy up", c.path)
		}
		if c, err = u.lookupChild(n, dp, name); err != nil {
			return u.errno(err, "lookup", c.path)
		}
	}
	if !n.hasUpper() {
		if err := u.ensureDir(n.lower.Path); err != nil {
			return u.errno(err, "copy up", n.lower.Path)
		}
	}
	dfd, err := u.openDir(dp)
	if err != nil {
		return u.errno(err, "open", dp)
	}
	defer u.closeDir(dfd)
	if c.upper {
		if dir {
			if err := clearWhiteouts(dfd, name); err != nil {
				return u.errno(err, "rmdir", c.path)
			}
			err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
		} else {
			err = unix.Unlinkat(dfd, name, 0)
		}
		if err != nil {
			return toErrno(err)
		}
	}
	if n.merged() {
		if _, ok := u.tree.Child(n.lower.Path, name); ok {
			if err := whiteout(dfd, name); err != nil {
				return u.errno(err, "whiteout", c.path)
			}
		}
	}
	u.dropPending(n.GetChild(name))
	return 0
}

// checkEmpty fails with ENOTEMPTY unless directory child c shows no entries.
func (u *union) checkEmpty(c *child) syscall.Errno {
	var lowerKids []*layerstore.Entry
	if u.childMerged(c) {
		lowerKids = u.tree.Children(c.lower.Path)
	}
	if !c.upper {
		if len(lowerKids) > 0 {
			return syscall.ENOTEMPTY
		}
		return 0
	}
	l, err := u.listUpper(c.path, lowerKids)
	if err != nil {
		return u.errno(err, "readdir", c.path)
	}
	if len(l) > 0 {
		return syscall.ENOTEMPTY
	}
	return 0
}

// clearWhiteouts removes the whiteouts of upper directory name in dirfd,
// which shows empty, so that it can be removed or replaced.
func clearWhiteouts(dirfd int, name string) error {
	fd, err := openDirBeneath(dirfd, name)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	ents, err := readDirents(fd, ".")
	if err != nil {
		return err
	}
	for _, d := range ents {
		if err := unix.Unlinkat(fd, d.name, 0); err != nil {
			return &os.PathError{Op: "unlink", Path: joinPath(name, d.name), Err: err}
		}
	}
	return nil
}

var _ = (gofs.NodeRenamer)((*node)(nil))

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	u := n.u
	np, ok := newParent.(*node)
	if !ok || np.u != u {
		return syscall.EXDEV
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	if u.ro {
		return syscall.EROFS
	}
	exchange := flags&unix.RENAME_EXCHANGE != 0
	u.nsMu.Lock()
	defer u.nsMu.Unlock()

	sp, errno := n.dirPath()
	if errno != 0 {
		return errno
	}
	dp, errno := np.dirPath()
	if errno != 0 {
		return errno
	}
	src, err := u.lookupChild(n, sp, name)
	if err != nil {
		return u.errno(err, "lookup", joinPath(sp, name))
	}
	if !src.exists {
		return syscall.ENOENT
	}
	dst, err := u.lookupChild(np, dp, newName)
	if err != nil {
		return u.errno(err, "lookup", joinPath(dp, newName))
	}
	switch {
	case exchange && !dst.exists:
		return syscall.ENOENT
	case dst.exists && flags&unix.RENAME_NOREPLACE != 0:
		return syscall.EEXIST
	case dst.exists && !exchange:
		if src.ino == dst.ino {
			return 0 // two names of one inode: nothing to do
		}
		if src.isDir() && !dst.isDir() {
			return syscall.ENOTDIR
		}
		if !src.isDir() && dst.isDir() {
			return syscall.EISDIR
		}
		if dst.isDir() {
			if errno := u.checkEmpty(&dst); errno != 0 {
				return errno
			}
		}
	}

	// Both ends become upper entries; a merged directory that moves is
	// copied up whole first, so it never needs its old path again.
	if err := u.prepareMove(&src); err != nil {
		return u.errno(err, "copy up", src.path)
	}
	if dst.exists {
		if exchange {
			err = u.prepareMove(&dst)
		} else if !dst.upper && !dst.isDir() && dst.lower.Nlink > 1 {
			err = u.copyUpFile(dst.lower, true)
		}
		if err != nil {
			return u.errno(err, "copy up", dst.path)
		}
	}
	if !np.hasUpper() {
		if err := u.ensureDir(np.lower.Path); err != nil {
			return u.errno(err, "copy up", np.lower.Path)
		}
	}
	// Re-resolve: copy-up changed what the upper dir holds.
	if src, err = u.lookupChild(n, sp, name); err != nil {
		return u.errno(err, "lookup", src.path)
	}
	if dst, err = u.lookupChild(np, dp, newName); err != nil {
		return u.errno(err, "lookup", dst.path)
	}
	sfd, err := u.openDir(sp)
	if err != nil {
		return u.errno(err, "open", sp)
	}
	defer u.closeDir(sfd)
	dfd, err := u.openDir(dp)
	if err != nil {
		return u.errno(err, "open", dp)
	}
	defer u.closeDir(dfd)
	if dst.whiteout {
		if err := unix.Unlinkat(dfd, newName, 0); err != nil {
			return toErrno(err)
		}
	}
	if dst.upper && dst.isDir() && !exchange {
		if err := clearWhiteouts(dfd, newName); err != nil {
			return u.errno(err, "rename", dst.path)
		}
	}
	var rflags uint
	if exchange {
		rflags = unix.RENAME_EXCHANGE
	}
	if err := unix.Renameat2(sfd, name, dfd, newName, rflags); err != nil {
		return toErrno(err)
	}

	// A directory that lands on a path where the lower tree has a directory
	// must hide it.
	if src.isDir() {
		if err := u.hideLowerDir(np, newName, dfd); err != nil {
			return u.errno(err, "rename", dst.path)
		}
	}
	if exchange {
		if dst.isDir() {
			if err := u.hideLowerDir(n, name, sfd); err != nil {
				return u.errno(err, "rename", src.path)
			}
		}
	} else if n.merged() {
		if _, ok := u.tree.Child(n.lower.Path, name); ok {
			if err := whiteout(sfd, name); err != nil {
				return u.errno(err, "whiteout", src.path)
			}
		}
	}

	// Until go-fuse moves its tree (after this returns), paths of the moved
	// inodes come from here.
	srcIn, dstIn := n.GetChild(name), np.GetChild(newName)
	u.setPending(srcIn, np.EmbeddedInode(), newName)
	if exchange {
		u.setPending(dstIn, n.EmbeddedInode(), name)
	} else {
		u.dropPending(dstIn)
	}
	return 0
}

// prepareMove gives the entry c an upper copy that can move: files are
// copied up (metadata only), merged directories materialized.
func (u *union) prepareMove(c *child) error {
	switch {
	case c.isDir() && u.childMerged(c):
		return u.materialize(c.path, c.lower)
	case !c.upper:
		return u.copyUpFile(c.lower, true)
	}
	return nil
}

// hideLowerDir makes the directory now named name in dir (its upper
// directory open as dirfd) opaque when the lower tree has a directory of
// that path showing there.
func (u *union) hideLowerDir(dir *node, name string, dirfd int) error {
	if !dir.merged() {
		return nil
	}
	if e, ok := u.tree.Child(dir.lower.Path, name); ok && e.Type == layerstore.TypeDir {
		return setOpaque(dirfd, name)
	}
	return nil
}
