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

// listing is one entry of a merged directory listing.
type listing struct {
	name string
	ino  uint64
	mode uint32 // type bits
}

// list returns the merged entries of directory n at merged path dp, sorted
// by name. Callers hold nsMu unless n has no upper copy.
func (u *union) list(n *node, dp string) ([]listing, error) {
	var lowerKids []layerstore.Dirent
	if n.merged() {
		lowerKids = u.tree.DirentsAt(n.lower)
	}
	if !n.hasUpper() {
		out := make([]listing, 0, len(lowerKids))
		for _, e := range lowerKids {
			out = append(out, listing{name: e.Name, ino: e.Ino, mode: e.Type.UnixMode(0)})
		}
		return out, nil
	}
	return u.listUpper(dp, lowerKids)
}

// listUpper merges the upper directory at merged path dp with the lower
// entries that show through it (lowerKids, sorted). Callers hold nsMu.
func (u *union) listUpper(dp string, lowerKids []layerstore.Dirent) ([]listing, error) {
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
		if !shadow[e.Name] {
			out = append(out, listing{name: e.Name, ino: e.Ino, mode: e.Type.UnixMode(0)})
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
	_ = (gofs.FileLookuper)((*dirHandle)(nil))
)

// errKnown is Lookup's answer for a child the kernel holds already; go-fuse
// then sends the entry with node ID 0.
const errKnown = syscall.EEXIST

// Lookup serves the lookups of a READDIRPLUS. A child the kernel holds
// already (go-fuse has it under this directory) gets no attributes: an
// entry with node ID 0 is one the kernel leaves alone (fuse_direntplus_link
// in fs/fuse/readdir.c), while a full one makes it forget the child's
// cached POSIX ACLs (forget_all_cached_acls there), so that ls -l after a
// listing the kernel read again (its cached pages reclaimed) would send a
// GETXATTR for every child. The kernel keeps the attributes it has, which
// are as good: lower entries do not change, and changes go through it.
//
// A raw child (rawnode.go) comes back as errRaw with out filled, which the
// bridge leaves as it is; the kernel holds one already when rawFS counts
// its lookups. Other errors get the negative timeout, as the bridge gave
// them when it had one (rawFS.Lookup sets it for LOOKUPs now).
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if d.n.GetChild(name) != nil {
		out.SetEntryTimeout(negativeTimeout)
		return nil, errKnown
	}
	in, errno := d.n.lookup(ctx, name, out, true)
	if errno != 0 && errno != errRaw {
		out.SetEntryTimeout(negativeTimeout)
	}
	return in, errno
}

func (d *dirHandle) load() syscall.Errno {
	n, u := d.n, d.n.u
	var l []listing
	var err error
	if !n.hasUpper() {
		l, err = u.list(n, n.lowerPath())
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
