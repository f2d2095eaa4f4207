package fs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

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
	u.lockNS()
	defer u.unlockNS()
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
		if err := u.ensureDir(n.lowerPath()); err != nil {
			return u.errno(err, "copy up", n.lowerPath())
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
		}
		// The kernel may still reach the inode (open files, /proc/self/fd
		// links, a working directory): it keeps it, as the upper file
		// system would for a process of its own.
		pin := u.pinVictim(n, dfd, name, c.ino)
		if dir {
			err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
		} else {
			err = unix.Unlinkat(dfd, name, 0)
		}
		pin.keepPin(err)
		if err != nil {
			return toErrno(err)
		}
		u.lostName(pin, &c.st, c.ino)
	}
	if n.merged() {
		if _, ok := u.tree.ChildAt(n.lower, name); ok {
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
	var lowerKids []layerstore.Dirent
	if u.childMerged(c) {
		lowerKids = u.tree.DirentsAt(c.lower.Ref())
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
