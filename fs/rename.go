package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

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
	u.lockNS()
	defer u.unlockNS()

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
		if err := u.ensureDir(np.lowerPath()); err != nil {
			return u.errno(err, "copy up", np.lowerPath())
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
	pin := victimPin{fd: -1}
	if exchange {
		rflags = unix.RENAME_EXCHANGE
	} else if dst.upper && dst.ino != src.ino {
		pin = u.pinVictim(np, dfd, newName, dst.ino) // replaced: see remove
	}
	err = unix.Renameat2(sfd, name, dfd, newName, rflags)
	pin.keepPin(err)
	if err != nil {
		return toErrno(err)
	}
	if !exchange && dst.upper && dst.ino != src.ino {
		u.lostName(pin, &dst.st, dst.ino)
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
		if _, ok := u.tree.ChildAt(n.lower, name); ok {
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
	if e, ok := u.tree.ChildAt(dir.lower, name); ok && e.Type == layerstore.TypeDir {
		return setOpaque(dirfd, name)
	}
	return nil
}
