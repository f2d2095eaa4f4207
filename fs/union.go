package fs

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// Cache lifetimes the kernel is given. Lower entries never change, and what
// changes goes through the kernel, which invalidates what it changed; upper
// entries get a short lifetime all the same, as cheap insurance.
const (
	lowerTimeout    = 24 * time.Hour
	upperTimeout    = time.Second
	negativeTimeout = time.Hour
)

// union is the state of one mount: the lower tree, the upper dir and what
// this mount knows about which lower entries it copied up.
type union struct {
	tree    *layerstore.Tree
	objects func(digest.Digest) string
	upper   string // absolute path of the upper dir; "" when read-only
	rootFd  int    // O_PATH descriptor of the upper dir (-1: none or closed); nsMu keeps it open
	ro      bool
	objDir  string // directory of some object, for statfs of a read-only mount
	log     *slog.Logger

	passthrough atomic.Bool   // read-only opens of objects use FUSE passthrough
	upperPT     atomic.Bool   // opens of upper files with their own data use FUSE passthrough (iomode.go)
	io          ioModes       // opens by io mode, while upperPT
	backing     backingDevs   // file systems the kernel takes backing files of (backing.go)
	dev         atomic.Uint64 // the mount's device, once mounted (privs.go)
	capMu       sync.Mutex
	capDrops    map[*node]uint32 // node -> pid that last removed its security.capability (privs.go)
	root        *node

	// nsMu guards the namespace of the upper dir: changes hold it
	// exclusively, path resolution and path-based reads share it. Lock order:
	// a node's lock before nsMu.
	nsMu sync.RWMutex
	dirs dirCache // upper directories open by path; emptied when nsMu is released exclusively

	nextIno atomic.Uint64 // next inode number for a new upper file

	inoMu sync.RWMutex
	inos  map[uint64]uint64 // upper st_ino -> mount inode number, while the upper inode has a name or the kernel a node of it (dropIno)

	copied   sync.Map // lower Ino -> struct{}: has an upper copy (monotone)
	unmerged sync.Map // lower dir Ino -> struct{}: copied whole, lower no longer shows (monotone)

	metaMu   sync.Mutex
	metacopy map[uint64]*layerstore.Entry // inode -> lower entry whose object still holds the data

	groupsOnce sync.Once
	groups     map[uint64][]string // lower Ino -> paths, hard-link groups only

	pendMu  sync.Mutex
	pending map[*gofs.Inode]placement // renames the go-fuse tree does not show yet

	state    nodeState // per-node state few nodes have
	raw      rawNodes  // the kernel's nodes of pure lower entries (rawnode.go)
	rawFiles rawFiles  // rawFS's handles of raw nodes (rawfile.go)

	labelsOnce sync.Once
	labels     atomic.Bool // the mount may hold SELinux labels (see noXattr)
}

// placement is where a renamed inode is now.
type placement struct {
	parent *gofs.Inode
	name   string
}

func newUnion(tree *layerstore.Tree, opts *Options, log *slog.Logger) *union {
	u := &union{
		tree:     tree,
		objects:  opts.Objects,
		ro:       opts.ReadOnly,
		log:      log,
		inos:     map[uint64]uint64{},
		metacopy: map[uint64]*layerstore.Entry{},
		pending:  map[*gofs.Inode]placement{},
		rootFd:   -1,
	}
	u.state.init()
	u.nextIno.Store(max(tree.NextIno, 2))
	return u
}

func (u *union) isCopied(ino uint64) bool {
	_, ok := u.copied.Load(ino)
	return ok
}

func (u *union) isUnmerged(ino uint64) bool {
	_, ok := u.unmerged.Load(ino)
	return ok
}

// newIno hands out an inode number for a new upper file.
func (u *union) newIno() uint64 { return u.nextIno.Add(1) - 1 }

// setIno records that the upper inode of st is mount inode ino.
func (u *union) setIno(st *unix.Stat_t, ino uint64) {
	u.inoMu.Lock()
	u.inos[st.Ino] = ino
	u.inoMu.Unlock()
}

// inoOf returns the mount inode number of an upper inode, giving it a new
// one if this mount has not seen it (which only happens to files someone
// put into the upper dir behind the mount's back).
func (u *union) inoOf(st *unix.Stat_t) uint64 {
	u.inoMu.RLock()
	ino, ok := u.inos[st.Ino]
	u.inoMu.RUnlock()
	if ok {
		return ino
	}
	u.inoMu.Lock()
	defer u.inoMu.Unlock()
	if ino, ok := u.inos[st.Ino]; ok {
		return ino
	}
	ino = u.newIno()
	u.inos[st.Ino] = ino
	u.log.Debug("strata fs: upper entry the mount did not make", "upper ino", st.Ino, "ino", ino)
	return ino
}

// dropIno forgets that upper inode number upperIno is mount inode ino,
// when that inode is gone (no name left, and the kernel forgot it or never
// knew it): the upper file system may give the number to a new file, and
// a mount that creates and removes files for a long time would otherwise
// keep an entry for every file it ever made. An entry that names another
// mount inode (the number reused already) stays.
func (u *union) dropIno(upperIno, ino uint64) {
	u.inoMu.Lock()
	if u.inos[upperIno] == ino {
		delete(u.inos, upperIno)
	}
	u.inoMu.Unlock()
	u.setMetacopy(ino, nil) // a metacopy removed before its data was copied
}

// knownIno reports the mount inode of an upper inode without assigning one.
func (u *union) knownIno(st *unix.Stat_t) (uint64, bool) {
	u.inoMu.RLock()
	defer u.inoMu.RUnlock()
	ino, ok := u.inos[st.Ino]
	return ino, ok
}

func (u *union) metacopyOf(ino uint64) *layerstore.Entry {
	u.metaMu.Lock()
	defer u.metaMu.Unlock()
	return u.metacopy[ino]
}

func (u *union) setMetacopy(ino uint64, e *layerstore.Entry) {
	u.metaMu.Lock()
	defer u.metaMu.Unlock()
	if e == nil {
		delete(u.metacopy, ino)
	} else {
		u.metacopy[ino] = e
	}
}

// groupPaths returns the paths of the lower hard-link group of ino, sorted.
func (u *union) groupPaths(ino uint64) []string {
	u.groupsOnce.Do(func() {
		u.groups = map[uint64][]string{}
		_ = u.tree.Walk(func(e *layerstore.Entry) error {
			if e.Type != layerstore.TypeDir && e.Nlink > 1 {
				u.groups[e.Ino] = append(u.groups[e.Ino], e.Path)
			}
			return nil
		})
	})
	return u.groups[ino]
}

// setPending records that in now lives at (parent, name), until the go-fuse
// tree shows it there too.
func (u *union) setPending(in *gofs.Inode, parent *gofs.Inode, name string) {
	if in == nil {
		return
	}
	u.pendMu.Lock()
	u.pending[in] = placement{parent, name}
	u.pendMu.Unlock()
}

func (u *union) dropPending(in *gofs.Inode) {
	if in == nil {
		return
	}
	u.pendMu.Lock()
	delete(u.pending, in)
	u.pendMu.Unlock()
}

// parentOf returns where in is: a pending rename first, else go-fuse's
// last known parent.
func (u *union) parentOf(in *gofs.Inode) (string, *gofs.Inode) {
	name, parent := in.Parent()
	u.pendMu.Lock()
	defer u.pendMu.Unlock()
	if pl, ok := u.pending[in]; ok {
		if pl.parent == parent && pl.name == name {
			delete(u.pending, in) // go-fuse caught up
		} else {
			return pl.name, pl.parent
		}
	}
	return name, parent
}

// childNode returns the node of mount inode ino that the kernel knows as
// name in dir: go-fuse's child, or one a pending rename put there. nil
// when there is none.
func (u *union) childNode(dir *node, name string, ino uint64) *node {
	if in := dir.GetChild(name); in != nil {
		if c, ok := in.Operations().(*node); ok && c.ino == ino {
			return c
		}
	}
	din := dir.EmbeddedInode()
	u.pendMu.Lock()
	defer u.pendMu.Unlock()
	for in, pl := range u.pending {
		if pl.parent == din && pl.name == name {
			if c, ok := in.Operations().(*node); ok && c.ino == ino {
				return c
			}
		}
	}
	return nil
}

// pinVictim opens the upper entry name of directory dirfd O_PATH when it
// is about to lose that name and the kernel knows its node (mount inode
// ino): keepPin hands the descriptor to the node once the name is gone, or
// closes it. Callers hold nsMu exclusively.
func (u *union) pinVictim(dir *node, dirfd int, name string, ino uint64) victimPin {
	c := u.childNode(dir, name, ino)
	if c == nil {
		return victimPin{fd: -1}
	}
	fd, err := pinAt(dirfd, name)
	if err != nil {
		// EMFILE, say: the node loses its inode once the name goes, but
		// it stays the kernel's, and so does its inode number (lostName).
		u.log.Warn("strata fs: cannot keep the inode of an entry being removed", "name", name, "err", err)
		return victimPin{n: c, fd: -1}
	}
	return victimPin{n: c, fd: fd}
}

type victimPin struct {
	n  *node
	fd int
}

// keepPin gives the pin to its node when the change that took its name
// succeeded (err nil), else closes it.
func (p victimPin) keepPin(err error) {
	switch {
	case p.fd < 0:
	case err != nil:
		unix.Close(p.fd)
	default:
		p.n.pin(p.fd)
	}
}

// lostName is called when the upper entry st (mount inode ino) has lost a
// name, with the pin taken for it (its node set even when its descriptor
// could not be opened): an inode the kernel has no node of is
// gone with its last name, and its number with it; one the kernel knows
// goes when the kernel forgets it (node.unpin).
func (u *union) lostName(p victimPin, st *unix.Stat_t, ino uint64) {
	if p.n != nil {
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Nlink <= 1 {
		u.dropIno(st.Ino, ino)
	}
}

// pathOf returns the merged path of n. Callers hold nsMu. A node with no
// upper copy is where the tree has it: nothing moves without copy-up.
func (u *union) pathOf(n *node) (string, bool) {
	if !n.hasUpper() {
		return n.lowerPath(), true
	}
	var segs []string
	in := n.EmbeddedInode()
	root := u.root.EmbeddedInode()
	for in != root {
		name, parent := u.parentOf(in)
		if parent == nil {
			return "", false
		}
		segs = append(segs, name)
		in = parent
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return strings.Join(segs, "/"), true
}

// upperStat resolves the upper entry of n: its merged path and lstat,
// checked to be n's inode. Callers hold nsMu.
func (u *union) upperStat(n *node) (string, unix.Stat_t, error) {
	p, ok := u.pathOf(n)
	if !ok {
		return "", unix.Stat_t{}, unix.ENOENT
	}
	dfd, name, err := u.at(p)
	if err != nil {
		return "", unix.Stat_t{}, err
	}
	st, err := fstatat(dfd, name)
	u.closeDir(dfd)
	if err != nil {
		return "", st, err
	}
	if ino, ok := u.knownIno(&st); !ok || ino != n.ino {
		return "", st, unix.ESTALE
	}
	return p, st, nil
}

// openUpperOf opens the upper entry of n with flags (O_PATH for a
// descriptor to operate on it), never through a symlink, checked to be n's
// inode. Callers hold nsMu.
func (u *union) openUpperOf(n *node, flags int) (int, error) {
	p, ok := u.pathOf(n)
	if !ok {
		return -1, unix.ENOENT
	}
	var fd int
	var err error
	switch {
	case u.rootFd < 0:
		return -1, unix.EROFS
	case p == "":
		fd, err = openat(u.rootFd, ".", flags|unix.O_CLOEXEC, 0)
	default:
		fd, err = openBeneath(u.rootFd, p, flags)
	}
	if err != nil {
		return -1, err
	}
	st, err := fstat(fd)
	if ino, ok := u.knownIno(&st); err != nil || !ok || ino != n.ino {
		unix.Close(fd)
		return -1, unix.ESTALE
	}
	return fd, nil
}

// selinuxXattr is the name of an SELinux label.
const selinuxXattr = "security.selinux"

// noXattr is the answer to a GETXATTR of a name an entry does not have:
// ENODATA, except for security.selinux on a mount that holds no labels (no
// entry of its image has one and none was set since), which answers
// EOPNOTSUPP, as a file system without label support does. The kernel asks
// the file system for security.selinux only when no security module
// answers it, and keeps no cache of xattrs for FUSE, so ls -l sends one
// GETXATTR per entry; GNU ls stops asking on a device once told
// EOPNOTSUPP (getfilecon_cache in coreutils' ls.c). A label set later
// makes the mount one with labels for the rest of its life, and for the
// mounts that resume its upper dir (markLabels); a label an entry has is
// always returned.
func (u *union) noXattr(name string) syscall.Errno {
	if name != selinuxXattr {
		return syscall.ENODATA
	}
	u.labelsOnce.Do(func() {
		// Conservative: the name anywhere in the tree file (a path, a
		// link target) counts as a label.
		if bytes.Contains(u.tree.Bytes(), []byte(selinuxXattr)) {
			u.labels.Store(true)
		}
	})
	if u.labels.Load() {
		return syscall.ENODATA
	}
	return syscall.EOPNOTSUPP
}

// joinPath joins a merged directory path and a name.
func joinPath(dir, name string) string { return layerstore.JoinPath(dir, name) }

// parentPath is the directory part of merged path p.
func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}
