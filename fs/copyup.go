package fs

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// Copy-up. Everything here that changes the upper dir's namespace runs with
// nsMu held exclusively; data copies run under the node's mu only, through
// file descriptors, so a large copy does not stop the rest of the mount.
//
// Invariants the code relies on:
//   - A lower entry without an upper copy is at its tree path: renaming
//     anything, or anything above it, copies it up first.
//   - A lower directory that merges is at its tree path: renaming a lower
//     directory copies it up whole (materialize) and stops the merging.
//   - A lower hard-link group is copied up whole, all its names linked, by
//     the first change to any of its names (including unlinking or renaming
//     one), so until then all its names show at their tree paths.

// copyUpMeta gives n an upper copy if it has none, without copying data.
func (n *node) copyUpMeta() syscall.Errno {
	if n.hasUpper() {
		return 0
	}
	if n.u.ro {
		return syscall.EROFS
	}
	n.u.lockNS()
	defer n.u.unlockNS()
	return n.u.errno(n.u.copyUpEntry(n.lowerEntry()), "copy up", n.lowerPath())
}

// copyUpForOpen gives n an upper copy for an open for writing: with trunc
// an empty file, else a metacopy whose data stays in the object until a
// write lands below the object's end (ensureData); appending, or opening for
// writing and only reading, copies no data. Callers hold n's lock.
func (n *node) copyUpForOpen(trunc bool) syscall.Errno {
	u := n.u
	if !n.hasUpper() {
		u.lockNS()
		err := u.copyUpFile(n.lowerEntry(), !trunc)
		u.unlockNS()
		if err != nil {
			return u.errno(err, "copy up", n.lowerPath())
		}
	}
	if trunc && u.metacopyOf(n.ino) != nil {
		return n.dropMetacopy()
	}
	return 0
}

// copyUpForTruncate prepares n for a truncation to size: a truncation below
// the object's end needs the data first. Callers hold n's lock.
func (n *node) copyUpForTruncate(size uint64) syscall.Errno {
	if errno := n.copyUpForOpen(size == 0); errno != 0 {
		return errno
	}
	if e := n.u.metacopyOf(n.ino); e != nil && int64(size) < e.Size {
		return n.copyUpData(e)
	}
	return 0
}

// ensureData copies the data of metacopy inode n into its upper file before
// a change at offset off: below the object's end the object holds the data.
func (n *node) ensureData(off int64) syscall.Errno {
	e := n.u.metacopyOf(n.ino)
	if e == nil || off >= e.Size {
		return 0
	}
	n.lock()
	defer n.unlock()
	if e = n.u.metacopyOf(n.ino); e == nil {
		return 0
	}
	return n.copyUpData(e)
}

// openPlaceholder opens n's upper file for writing, checking it is n's.
func (n *node) openPlaceholder() (*os.File, syscall.Errno) {
	u := n.u
	u.nsMu.RLock()
	defer u.nsMu.RUnlock()
	fd, err := u.openUpperOf(n, unix.O_RDWR)
	if err != nil {
		r, ok := n.holdFd()
		if !ok {
			return nil, toErrno(err)
		}
		fd, err = openat(unix.AT_FDCWD, procPath(r.fd), unix.O_RDWR|unix.O_CLOEXEC, 0)
		r.drop()
		if err != nil {
			return nil, toErrno(err)
		}
	}
	f := os.NewFile(uintptr(fd), "upper")
	st, err := fstat(fd)
	if ino, ok := u.knownIno(&st); err != nil || !ok || ino != n.ino {
		f.Close()
		return nil, syscall.ESTALE
	}
	return f, 0
}

// copyUpData copies the data of metacopy inode n from object e into the
// first e.Size bytes of its upper file (what was appended beyond stays) and
// then drops the metacopy mark. The file keeps its times. Callers hold n's lock.
func (n *node) copyUpData(e *layerstore.Entry) syscall.Errno {
	u := n.u
	dst, errno := n.openPlaceholder()
	if errno != 0 {
		return errno
	}
	defer dst.Close()
	st, err := fstat(int(dst.Fd()))
	if err != nil {
		return toErrno(err)
	}
	src, err := u.openObjectOf(e)
	if err != nil {
		return u.errno(err, "copy up data", e.Path)
	}
	defer src.Close()
	if err := copyContent(dst, src, e.Size); err != nil {
		return u.errno(fmt.Errorf("copy object %s: %w", e.Digest, err), "copy up data", e.Path)
	}
	if err := unix.Fremovexattr(int(dst.Fd()), XattrPrefix+markMetacopy); err != nil && !errors.Is(err, unix.ENODATA) {
		return toErrno(err)
	}
	u.setMetacopy(n.ino, nil)
	restoreTimes(int(dst.Fd()), &st)
	return 0
}

// dropMetacopy empties the placeholder of n instead of copying data into it,
// for an open with O_TRUNC or a truncation to 0. Callers hold n's lock.
func (n *node) dropMetacopy() syscall.Errno {
	dst, errno := n.openPlaceholder()
	if errno != 0 {
		return errno
	}
	defer dst.Close()
	st, err := fstat(int(dst.Fd()))
	if err != nil {
		return toErrno(err)
	}
	if err := dst.Truncate(0); err != nil {
		return toErrno(err)
	}
	if err := unix.Fremovexattr(int(dst.Fd()), XattrPrefix+markMetacopy); err != nil && !errors.Is(err, unix.ENODATA) {
		return toErrno(err)
	}
	n.u.setMetacopy(n.ino, nil)
	restoreTimes(int(dst.Fd()), &st)
	return 0
}

func restoreTimes(fd int, st *unix.Stat_t) {
	_ = unix.UtimesNanoAt(fd, "", []unix.Timespec{st.Atim, st.Mtim}, unix.AT_EMPTY_PATH)
}

// openObjectOf opens the object holding the data of regular file e,
// checking that it is there and has e's size.
func (u *union) openObjectOf(e *layerstore.Entry) (*os.File, error) {
	if e.Digest == "" {
		return nil, fmt.Errorf("%s: regular file without a digest: %w", e.Path, layerstore.ErrCorrupt)
	}
	f, err := openObject(u.objects(e.Digest))
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", e.Digest, err)
	}
	st, err := fstat(int(f.Fd()))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("object %s: %w", e.Digest, err)
	}
	if st.Size != e.Size {
		f.Close()
		return nil, fmt.Errorf("object %s has %d bytes, want %d: %w", e.Digest, st.Size, e.Size, layerstore.ErrSizeMismatch)
	}
	return f, nil
}

// copyUpEntry gives lower entry e an upper copy (metacopy for files).
// Callers hold nsMu exclusively.
func (u *union) copyUpEntry(e *layerstore.Entry) error {
	if e.Type == layerstore.TypeDir {
		return u.ensureDir(e.Path)
	}
	return u.copyUpFile(e, true)
}

// ensureDir gives the lower directory at merged path p an upper copy, and
// its parents before it, walking down from the deepest one that has one by
// descriptor. Callers hold nsMu exclusively.
func (u *union) ensureDir(p string) error {
	var chain []*layerstore.Entry // to copy up, deepest first
	q := p
	for q != "" {
		e, ok := u.tree.Lookup(q)
		if !ok || e.Type != layerstore.TypeDir {
			return fmt.Errorf("copy up %q: no lower directory there: %w", q, layerstore.ErrCorrupt)
		}
		if u.isCopied(e.Ino) {
			break
		}
		chain = append(chain, e)
		q = parentPath(q)
	}
	if len(chain) == 0 {
		return nil
	}
	dfd, err := u.openDir(q)
	if err != nil {
		return &os.PathError{Op: "open", Path: q, Err: err}
	}
	if err := u.checkDirIs(dfd, q); err != nil {
		u.closeDir(dfd)
		return err
	}
	for i := len(chain) - 1; i >= 0; i-- {
		e := chain[i]
		var next int
		err := withParentTimes(dfd, func() error {
			err := unix.Mkdirat(dfd, e.Name(), 0o700)
			made := err == nil
			if err != nil && !errors.Is(err, unix.EEXIST) {
				return &os.PathError{Op: "mkdir", Path: e.Path, Err: err}
			}
			fd, err := openat(dfd, e.Name(), dirPathFlags, 0)
			if err != nil {
				return &os.PathError{Op: "open", Path: e.Path, Err: err}
			}
			st, err := fstat(fd)
			if err != nil {
				unix.Close(fd)
				return err
			}
			// Known as e's from here, so that a copy-up failing midway
			// leaves a directory the next one takes up. One that was there
			// and that the mount knows as another inode was made in place
			// of e after e was removed: not e's to change.
			if made {
				u.setIno(&st, e.Ino)
			} else if ino, ok := u.knownIno(&st); ok && ino != e.Ino {
				unix.Close(fd)
				return &os.PathError{Op: "copy up", Path: e.Path, Err: unix.EEXIST}
			}
			if err := u.applyMeta(fd, e); err != nil {
				unix.Close(fd)
				return err
			}
			u.setIno(&st, e.Ino)
			u.copied.Store(e.Ino, struct{}{})
			next = fd
			return nil
		})
		u.closeDir(dfd)
		if err != nil {
			return err
		}
		dfd = next
	}
	u.closeDir(dfd)
	return nil
}

// checkDirIs fails with ENOENT unless dirfd, the upper directory at merged
// path p, is the copy of the lower directory at p. A copy-up goes to the
// tree path of its entry, which is where a lower entry without an upper
// copy is while it has a name; one that lost its name (an unlinked file
// still open, in a directory removed since) must not land in a directory
// made at that path later (it failed with ENOENT on overlayfs, where it
// came back in the new directory here).
func (u *union) checkDirIs(dirfd int, p string) error {
	e, ok := u.tree.Lookup(p)
	if !ok {
		return nil
	}
	st, err := fstat(dirfd)
	if err != nil {
		return &os.PathError{Op: "stat", Path: p, Err: err}
	}
	if ino, ok := u.knownIno(&st); ok && ino != e.Ino {
		return &os.PathError{Op: "copy up into", Path: p, Err: unix.ENOENT}
	}
	return nil
}

// copyUpFile gives lower non-directory e an upper copy, with every name of
// its hard-link group linked to it. With metacopy, a regular file's data
// stays in its object; without, the copy is empty (for a truncation).
// Callers hold nsMu exclusively.
func (u *union) copyUpFile(e *layerstore.Entry, metacopy bool) error {
	if u.isCopied(e.Ino) {
		return nil
	}
	paths := []string{e.Path}
	if e.Nlink > 1 {
		for _, p := range u.groupPaths(e.Ino) {
			if p != e.Path {
				paths = append(paths, p)
			}
		}
	}
	meta := metacopy && e.Type == layerstore.TypeReg && e.Size > 0
	first := paths[0]
	if err := u.ensureDir(parentPath(first)); err != nil {
		return err
	}
	dfd, name, err := u.at(first)
	if err != nil {
		return &os.PathError{Op: "open", Path: parentPath(first), Err: err}
	}
	defer u.closeDir(dfd)
	if err := u.checkDirIs(dfd, parentPath(first)); err != nil {
		return err
	}
	var st unix.Stat_t
	err = withParentTimes(dfd, func() (err error) {
		st, err = u.createCopy(dfd, name, e, meta)
		return err
	})
	if err != nil {
		return err
	}
	for _, q := range paths[1:] {
		if err := u.ensureDir(parentPath(q)); err != nil {
			return err
		}
		qfd, qname, err := u.at(q)
		if err != nil {
			return &os.PathError{Op: "open", Path: parentPath(q), Err: err}
		}
		err = withParentTimes(qfd, func() error {
			if err := unix.Linkat(dfd, name, qfd, qname, 0); err != nil {
				return &os.LinkError{Op: "link", Old: first, New: q, Err: err}
			}
			return nil
		})
		u.closeDir(qfd)
		if err != nil {
			return err
		}
	}
	u.setIno(&st, e.Ino)
	if meta {
		u.setMetacopy(e.Ino, e)
	}
	u.copied.Store(e.Ino, struct{}{})
	return nil
}

// createCopy makes the upper copy of non-directory e as name in the upper
// directory dirfd: a sparse placeholder with a metacopy mark (meta), an
// empty file, a symlink, a device or a fifo, with e's owner, mode, xattrs
// and times.
func (u *union) createCopy(dirfd int, name string, e *layerstore.Entry, meta bool) (unix.Stat_t, error) {
	var st unix.Stat_t
	switch e.Type {
	case layerstore.TypeReg:
		fd, err := openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return st, &os.PathError{Op: "create", Path: e.Path, Err: err}
		}
		defer unix.Close(fd)
		if err := unix.Fchown(fd, int(e.UID), int(e.GID)); err != nil {
			return st, &os.PathError{Op: "chown", Path: e.Path, Err: err}
		}
		if meta {
			if err := unix.Ftruncate(fd, e.Size); err != nil {
				return st, &os.PathError{Op: "truncate", Path: e.Path, Err: err}
			}
		}
		if err := unix.Fchmod(fd, e.Mode&0o7777); err != nil {
			return st, &os.PathError{Op: "chmod", Path: e.Path, Err: err}
		}
		if err := u.setXattrs(fd, e); err != nil {
			return st, err
		}
		if meta {
			if err := unix.Fsetxattr(fd, XattrPrefix+markMetacopy, []byte(e.Digest), 0); err != nil {
				return st, &os.PathError{Op: "setxattr metacopy", Path: e.Path, Err: err}
			}
		}
		ts := nsToTimespec(e.Mtime)
		if err := futimes(fd, ts, ts); err != nil {
			return st, &os.PathError{Op: "utimes", Path: e.Path, Err: err}
		}
		return fstat(fd)
	case layerstore.TypeSymlink:
		if err := unix.Symlinkat(e.Link, dirfd, name); err != nil {
			return st, &os.PathError{Op: "symlink", Path: e.Path, Err: err}
		}
	case layerstore.TypeChar, layerstore.TypeBlock, layerstore.TypeFifo:
		if err := unix.Mknodat(dirfd, name, e.UnixMode()&unix.S_IFMT|0o600, int(unix.Mkdev(e.Devmajor, e.Devminor))); err != nil {
			return st, &os.PathError{Op: "mknod", Path: e.Path, Err: err}
		}
	default:
		return st, fmt.Errorf("copy up %s: entry type %s: %w", e.Path, e.Type, layerstore.ErrCorrupt)
	}
	fd, err := pinAt(dirfd, name)
	if err != nil {
		return st, &os.PathError{Op: "open", Path: e.Path, Err: err}
	}
	defer unix.Close(fd)
	if err := u.applyMeta(fd, e); err != nil {
		return st, err
	}
	return fstat(fd)
}

// applyMeta sets e's owner, mode, xattrs and times on the upper entry open
// as fd (O_PATH).
func (u *union) applyMeta(fd int, e *layerstore.Entry) error {
	if err := unix.Fchownat(fd, "", int(e.UID), int(e.GID), unix.AT_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "chown", Path: e.Path, Err: err}
	}
	if e.Type != layerstore.TypeSymlink {
		if err := fchmodFd(fd, e.Mode&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: e.Path, Err: err}
		}
	}
	if err := u.setXattrs(fd, e); err != nil {
		return err
	}
	ts := nsToTimespec(e.Mtime)
	if err := futimes(fd, ts, ts); err != nil {
		return &os.PathError{Op: "utimes", Path: e.Path, Err: err}
	}
	return nil
}

// setXattrs copies e's xattrs with set. One the upper file system cannot
// hold (a user.* xattr on a symlink, a label it does not support) is logged
// and left out rather than failing the copy-up.
func (u *union) setXattrs(fd int, e *layerstore.Entry) error {
	for k, v := range e.Xattrs {
		if reservedXattr(k) {
			continue
		}
		if err := fsetxattr(fd, k, []byte(v), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
				u.log.Warn("strata fs: copy-up cannot keep an xattr", "path", e.Path, "xattr", k, "err", err)
				continue
			}
			return &os.PathError{Op: "setxattr " + k, Path: e.Path, Err: err}
		}
	}
	return nil
}

// withParentTimes runs fn, which creates or removes an entry of the upper
// directory dirfd as part of a copy-up, and then restores the directory's
// times: copy-up is not a change anyone should see.
func withParentTimes(dirfd int, fn func() error) error {
	st, err := fstat(dirfd)
	if err != nil {
		return fn()
	}
	err = fn()
	_ = futimes(dirfd, st.Atim, st.Mtim)
	return err
}

// materialize copies up the merged directory at p (lower entry e) whole:
// every lower entry that shows through it gets an upper copy (metadata only),
// whiteouts go, and the directory becomes opaque. It is what renaming a lower
// directory costs: one upper inode per entry, no data. Callers hold nsMu
// exclusively.
func (u *union) materialize(p string, e *layerstore.Entry) error {
	if err := u.ensureDir(p); err != nil {
		return err
	}
	dfd, err := u.openDir(p)
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer u.closeDir(dfd)
	st0, err := fstat(dfd)
	if err != nil {
		return err
	}
	for _, c := range u.tree.ChildrenOf(e) {
		cp := joinPath(p, c.Name())
		st, err := fstatat(dfd, c.Name())
		switch {
		case err == nil:
			wo, err := isWhiteout(dfd, c.Name(), &st)
			if err != nil {
				return err
			}
			if wo {
				if err := unix.Unlinkat(dfd, c.Name(), 0); err != nil {
					return &os.PathError{Op: "unlink", Path: cp, Err: err}
				}
				continue
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR && c.Type == layerstore.TypeDir {
				if ino, ok := u.knownIno(&st); ok && ino == c.Ino && !u.isUnmerged(c.Ino) {
					if err := u.materialize(cp, c); err != nil {
						return err
					}
				}
			}
		case errors.Is(err, unix.ENOENT):
			if c.Type == layerstore.TypeDir {
				err = u.materialize(cp, c)
			} else {
				err = u.copyUpFile(c, true)
			}
			if err != nil {
				return err
			}
		default:
			return &os.PathError{Op: "lstat", Path: cp, Err: err}
		}
	}
	if err := fsetxattr(dfd, XattrPrefix+markOpaque, []byte("y"), 0); err != nil {
		return &os.PathError{Op: "setxattr opaque", Path: p, Err: err}
	}
	u.unmerged.Store(e.Ino, struct{}{})
	_ = futimes(dfd, st0.Atim, st0.Mtim)
	return nil
}

// whiteout records that the lower entry name in upper directory dirfd is
// deleted.
func whiteout(dirfd int, name string) error {
	if err := unix.Mknodat(dirfd, name, unix.S_IFCHR, 0); err != nil {
		return &os.PathError{Op: "mknod whiteout", Path: name, Err: err}
	}
	fd, err := pinAt(dirfd, name)
	if err == nil {
		err = fsetxattr(fd, XattrPrefix+markWhiteout, []byte("y"), 0)
		unix.Close(fd)
	}
	if err != nil {
		_ = unix.Unlinkat(dirfd, name, 0)
		return &os.PathError{Op: "setxattr whiteout", Path: name, Err: err}
	}
	return nil
}

// setOpaque marks upper directory name in dirfd opaque.
func setOpaque(dirfd int, name string) error {
	fd, err := pinAt(dirfd, name)
	if err == nil {
		err = fsetxattr(fd, XattrPrefix+markOpaque, []byte("y"), 0)
		unix.Close(fd)
	}
	if err != nil {
		return &os.PathError{Op: "setxattr opaque", Path: name, Err: err}
	}
	return nil
}

// errno logs err (with what was being done to which path) when it is not an
// errno a caller expects, and maps it.
func (u *union) errno(err error, op, path string) syscall.Errno {
	if err == nil {
		return 0
	}
	e := toErrno(err)
	if e == syscall.EIO {
		u.log.Error("strata fs: "+op+" failed", "path", path, "err", err)
	}
	return e
}
