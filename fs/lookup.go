package fs

import (
	"context"
	"errors"
	"os"
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
				if e, ok := u.tree.ChildAt(n.lower, name); ok && e.Ino == c.ino {
					c.lower = e
				}
			}
			return c, nil
		case !errors.Is(err, unix.ENOENT):
			return c, &os.PathError{Op: "lstat", Path: c.path, Err: err}
		}
	}
	if merged {
		if e, ok := u.tree.ChildAt(n.lower, name); ok {
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
	cn := &node{u: n.u, ino: c.ino, lower: c.lower.Ref()}
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

// Lookup resolves name in directory n. A pure lower child (no upper copy,
// nothing at its path in the upper dir) is answered as a raw node (errRaw,
// rawnode.go) unless it is hard-linked or being promoted; anything else
// gets an Inode.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.lookup(ctx, name, out, false)
}

// lookup is Lookup; for a READDIRPLUS (plus), a raw child the kernel holds
// already is errKnown.
func (n *node) lookup(ctx context.Context, name string, out *fuse.EntryOut, plus bool) (*gofs.Inode, syscall.Errno) {
	u := n.u
	if len(name) > nameMax {
		return nil, syscall.ENAMETOOLONG // as the upper file system would say
	}
	if !n.hasUpper() {
		// A lower directory nothing was changed in: the tree answers.
		e, ok := u.tree.ChildAt(n.lower, name)
		if !ok {
			return nil, syscall.ENOENT
		}
		if !u.isCopied(e.Ino) {
			return n.lowerChild(ctx, e, out, plus)
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
	if !c.upper && !u.isCopied(c.ino) {
		return n.lowerChild(ctx, c.lower, out, plus)
	}
	n.entryOut(&c, out)
	return n.newChild(ctx, c.ino, c.lower, c.mode()), 0
}

// lowerChild answers a lookup that resolved to pure lower entry e.
func (n *node) lowerChild(ctx context.Context, e *layerstore.Entry, out *fuse.EntryOut, plus bool) (*gofs.Inode, syscall.Errno) {
	u := n.u
	if u.raw.answers(e) {
		if plus && u.raw.held(e.Ino) {
			return nil, errKnown
		}
		u.rawEntry(e, out)
		return nil, errRaw
	}
	lowerAttr(e, &out.Attr)
	out.SetEntryTimeout(lowerTimeout)
	out.SetAttrTimeout(lowerTimeout)
	return n.newChild(ctx, e.Ino, e, e.UnixMode()), 0
}
