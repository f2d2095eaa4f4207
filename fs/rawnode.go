package fs

import (
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-dev/strata/layerstore"
)

// Raw nodes: the kernel's inodes of pure lower entries cost no go-fuse
// Inode.
//
// A walk makes the kernel look up every entry, and a go-fuse Inode per
// entry (with its node-ID and StableAttr map entries and its place in the
// parent's children: about 400 bytes live, 600-800 resident) was most of a
// walked mount's memory. Yet a lower entry with no upper copy (pure: its
// inode not copied up) is all in the tree, which every mount shares.
// Node IDs are inode numbers (go-fuse's ExternalNodeID), so the kernel's
// ID of an entry is the same whoever answers for it: rawFS answers the
// read-only requests of pure entries from the tree (LOOKUP, GETATTR,
// READLINK, GETXATTR, LISTXATTR, READDIR, READDIRPLUS, STATFS, FORGET) and
// counts the kernel's lookups in a table of eight bytes per inode number;
// node.Lookup and the lookups of READDIRPLUS answer a pure child the same
// way (errRaw) instead of making an Inode.
//
// Anything else on a node the kernel got from rawFS (an open that rawFS
// does not answer itself, see rawfile.go; a change; a create in it)
// promotes it first: a LOOKUP of its name through the bridge in its
// parent, itself promoted first, makes the Inode; rawFS holds that one
// lookup and gives it back with a FORGET when the kernel's lookups of
// the node that rawFS answered are all forgotten. Why answers from the
// tree stay right: an entry changes only by a request that promotes it and
// its ancestors first; a directory with no upper copy has nothing changed
// under it (every copy-up copies its parents); and before an UNLINK, RMDIR
// or RENAME rawFS promotes the entry the name names when the kernel holds
// it raw, so the bridge's Inode follows it where it goes. A pure entry's
// parent in the kernel is its parent in the tree (an entry has one path
// while it is pure), which a promotion walks up.
//
// Hard-linked files (a lower group of names of one inode) are never raw:
// they go through the bridge as before, so a group stays one kernel inode
// that the copy-up of any name keeps right for all of them. A READDIRPLUS
// of a raw directory sends them without attributes (node ID 0) and the
// kernel looks them up on use.
//
// Lookup counts: the kernel's count of a node is the sum of what rawFS
// answered and what the bridge answered; a FORGET takes from rawFS's part
// first and passes the rest (and rawFS's own lookup of a promoted node,
// once its part is 0) to the bridge, so the bridge is never told of more
// forgets than it had lookups.

// errRaw is what node.Lookup and dirHandle.Lookup return for a child they
// answered as a raw node (out filled, node ID the inode number): the bridge
// then makes no Inode, and rawFS answers OK. It never reaches the kernel.
const errRaw = syscall.Errno(0x5a5a5a)

const rawPromoted = 1 << 31 // in rawNodes.counts: rawFS holds a bridge lookup of the node

// rawNodes is a mount's table of raw nodes.
type rawNodes struct {
	on     bool
	tree   *layerstore.Tree
	refs   []layerstore.Ref // inode number -> its tree record (0: none, or hard-linked)
	counts []atomic.Uint32  // inode number -> kernel lookups rawFS answered, | rawPromoted

	mu        sync.Mutex    // serializes promotions
	promoting atomic.Uint64 // the inode a promotion is looking up: node.Lookup makes its Inode
	// A promotion of a node holds its shard while the bridge makes its
	// Inode, and a raw open of the node holds it to decide (rawfile.go):
	// raw opens of other nodes, and other promotions' lookups of parents,
	// do not wait for it.
	shards [rawShards]sync.Mutex
}

const rawShards = 64

// shard is the lock of node id's promotion and raw opens.
func (rn *rawNodes) shard(id uint64) *sync.Mutex { return &rn.shards[id%rawShards] }

// init builds the table: one pass over the tree's records, 8 bytes per
// inode number. A tree whose inode numbers are much sparser than its
// entries (long chains that replaced files often) goes without.
func (rn *rawNodes) init(tree *layerstore.Tree) {
	n := tree.Len()
	if tree.NextIno > uint64(2*n+4096) || tree.InoAt(1) != fuse.FUSE_ROOT_ID {
		return
	}
	rn.tree = tree
	rn.refs = make([]layerstore.Ref, tree.NextIno)
	rn.counts = make([]atomic.Uint32, tree.NextIno)
	for r := layerstore.Ref(1); int(r) <= n; r++ {
		ino := tree.InoAt(r)
		if ino >= tree.NextIno {
			continue // check reports it; such an entry is never raw
		}
		if rn.refs[ino] != 0 {
			rn.refs[ino] = ^layerstore.Ref(0) // a second name: hard-linked
			continue
		}
		rn.refs[ino] = r
	}
	for i, r := range rn.refs {
		if r == ^layerstore.Ref(0) {
			rn.refs[i] = 0
		}
	}
	rn.on = true
}

// ref returns the tree record of node id, 0 unless it is a lower entry that
// may be raw.
func (rn *rawNodes) ref(id uint64) layerstore.Ref {
	if !rn.on || id >= uint64(len(rn.refs)) {
		return 0
	}
	return rn.refs[id]
}

// answers reports whether a lookup that resolved to pure lower entry e may
// answer it raw.
func (rn *rawNodes) answers(e *layerstore.Entry) bool {
	return rn.ref(e.Ino) != 0 && rn.promoting.Load() != e.Ino
}

// held reports whether the kernel holds node id from a raw answer.
func (rn *rawNodes) held(id uint64) bool {
	return rn.on && id < uint64(len(rn.counts)) && rn.counts[id].Load()&^rawPromoted != 0
}

// lookedUp counts a raw answer naming node id.
func (rn *rawNodes) lookedUp(id uint64) { rn.counts[id].Add(1) }

// needsPromotion reports whether the kernel holds node id from rawFS and the
// bridge has no Inode of it from rawFS.
func (rn *rawNodes) needsPromotion(id uint64) bool {
	if !rn.on || id >= uint64(len(rn.counts)) {
		return false
	}
	w := rn.counts[id].Load()
	return w != 0 && w&rawPromoted == 0
}

// forget applies a FORGET of n lookups of node id and returns how many go
// on to the bridge.
func (rn *rawNodes) forget(id, n uint64) uint64 {
	if !rn.on || id >= uint64(len(rn.counts)) {
		return n
	}
	c := &rn.counts[id]
	for {
		w := c.Load()
		held := uint64(w &^ rawPromoted)
		if held == 0 {
			return n
		}
		k := min(n, held)
		nw := w - uint32(k)
		rest := n - k
		if nw == rawPromoted {
			nw, rest = 0, rest+1 // and rawFS's own lookup goes too
		}
		if c.CompareAndSwap(w, nw) {
			return rest
		}
	}
}

// pure reports whether lower entry id has no upper copy, so the tree
// answers for it (a directory copied up whole is copied too).
func (u *union) pure(id uint64) bool { return !u.isCopied(id) }

// rawEntry fills out for pure lower entry e as a raw node and counts the
// lookup. The same bytes as the bridge's reply for the entry's Inode.
func (u *union) rawEntry(e *layerstore.Entry, out *fuse.EntryOut) {
	lowerAttr(e, &out.Attr)
	out.NodeId = e.Ino
	out.Generation = 0
	out.SetEntryTimeout(lowerTimeout)
	out.SetAttrTimeout(lowerTimeout)
	u.raw.lookedUp(e.Ino)
}

// rawLookup answers a LOOKUP in raw directory r; forward means the bridge
// has to (a hard-linked or copied child, "." or "..").
func (u *union) rawLookup(r layerstore.Ref, name string, out *fuse.EntryOut) (st fuse.Status, forward bool) {
	if name == "." || name == ".." {
		return 0, true
	}
	if len(name) > nameMax {
		return fuse.Status(syscall.ENAMETOOLONG), false
	}
	e, ok := u.tree.ChildAt(r, name)
	if !ok {
		out.SetEntryTimeout(negativeTimeout)
		return fuse.OK, false
	}
	if !u.raw.answers(e) || !u.pure(e.Ino) {
		return 0, true
	}
	u.rawEntry(e, out)
	return fuse.OK, false
}

// rawReadDir answers a READDIR or READDIRPLUS of raw directory r (inode
// id) with what the bridge's dirHandle gives: ".", "..", the children in
// name order, entry k at offset k+1; READDIRPLUS sends no attributes for
// children the kernel holds (see dirHandle.Lookup) or that are hard-linked.
func (u *union) rawReadDir(r layerstore.Ref, id uint64, in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	t := u.tree
	first, n := t.ChildRefsAt(r)
	parent := id
	if p := t.ParentAt(r); p != 0 {
		parent = t.InoAt(p)
	}
	total := uint64(n) + 2
	if in.Offset > total {
		return fuse.Status(syscall.EINVAL)
	}
	for i := in.Offset; i < total; i++ {
		var de fuse.DirEntry
		var c layerstore.Ref
		switch i {
		case 0:
			de = fuse.DirEntry{Name: ".", Ino: id, Mode: syscall.S_IFDIR}
		case 1:
			de = fuse.DirEntry{Name: "..", Ino: parent, Mode: syscall.S_IFDIR}
		default:
			c = first + layerstore.Ref(i-2)
			de = fuse.DirEntry{Name: t.NameAt(c), Ino: t.InoAt(c), Mode: t.TypeAt(c).UnixMode(0)}
		}
		de.Off = i + 1
		if !plus {
			if !out.AddDirEntry(de) {
				break
			}
			continue
		}
		eo := out.AddDirLookupEntry(de)
		if eo == nil {
			break
		}
		if c == 0 {
			continue // "." and "..": the kernel ignores their entries
		}
		if u.raw.ref(de.Ino) == 0 || u.raw.held(de.Ino) || !u.pure(de.Ino) {
			eo.SetEntryTimeout(negativeTimeout) // node ID 0: as the bridge sends a known child
			continue
		}
		u.rawEntry(t.At(c), eo)
	}
	return fuse.OK
}

// rawGetattr answers a GETATTR of raw node r.
func (u *union) rawGetattr(r layerstore.Ref, out *fuse.AttrOut) fuse.Status {
	lowerAttr(u.tree.At(r), &out.Attr)
	out.SetTimeout(lowerTimeout)
	return fuse.OK
}

// bridged makes sure the bridge has an Inode of node id before a request
// on it goes there: a node the kernel holds from rawFS is promoted.
func (r *rawFS) bridged(cancel <-chan struct{}, caller fuse.Caller, id uint64) fuse.Status {
	if !r.u.raw.needsPromotion(id) {
		return fuse.OK
	}
	rn := &r.u.raw
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return r.promote(cancel, caller, id)
}

// promote gives raw node id an Inode of the bridge: its parent first, then
// a LOOKUP of its name there, whose lookup rawFS keeps (rawPromoted).
// Callers hold rn.mu.
func (r *rawFS) promote(cancel <-chan struct{}, caller fuse.Caller, id uint64) fuse.Status {
	rn := &r.u.raw
	if !rn.needsPromotion(id) {
		return fuse.OK
	}
	ref := rn.ref(id)
	p := rn.tree.ParentAt(ref)
	if ref == 0 || p == 0 {
		return fuse.Status(syscall.ESTALE) // never handed out raw
	}
	pid := rn.tree.InoAt(p)
	if st := r.promote(cancel, caller, pid); !st.Ok() {
		return st
	}
	sh := rn.shard(id)
	sh.Lock()
	defer sh.Unlock()
	if !rn.needsPromotion(id) {
		return fuse.OK // forgotten while the parents were promoted
	}
	var out fuse.EntryOut
	rn.promoting.Store(id)
	st := r.bridgeLookup(cancel, &fuse.InHeader{NodeId: pid, Caller: caller}, rn.tree.NameAt(ref), &out)
	rn.promoting.Store(0)
	switch {
	case st == fuse.Status(errRaw):
		r.forget(out.NodeId, 1) // answered raw after all: another entry there now
		return fuse.Status(syscall.ESTALE)
	case !st.Ok():
		return st
	case out.NodeId != id:
		if out.NodeId != 0 {
			r.RawFileSystem.Forget(out.NodeId, 1)
		}
		return fuse.Status(syscall.ESTALE)
	}
	c := &rn.counts[id]
	for {
		w := c.Load()
		if w == 0 || w&rawPromoted != 0 {
			// Forgotten meanwhile (the kernel holds no request on a node
			// it forgot, so only by another path): give it back.
			r.RawFileSystem.Forget(id, 1)
			return fuse.OK
		}
		if c.CompareAndSwap(w, w|rawPromoted) {
			return fuse.OK
		}
	}
}

// bridgeLookup is the bridge's LOOKUP, which panics on a node ID it does
// not know: a promotion that met one (a bug) fails with ESTALE instead of
// taking the mount down.
func (r *rawFS) bridgeLookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) (st fuse.Status) {
	defer func() {
		if v := recover(); v != nil {
			r.u.log.Error("strata fs: promotion of a raw node failed", "parent", h.NodeId, "name", name, "panic", v)
			st = fuse.Status(syscall.ESTALE)
		}
	}()
	return r.RawFileSystem.Lookup(cancel, h, name, out)
}

// prePromote promotes the entry that name names in directory dir when the
// kernel holds it raw, before a request removes or moves that name: the
// bridge's Inode then follows the entry (an open file unlinked, a
// directory renamed), where its tree path would lead nowhere.
func (r *rawFS) prePromote(cancel <-chan struct{}, caller fuse.Caller, dir uint64, name string) {
	rn := &r.u.raw
	ref := rn.ref(dir)
	if ref == 0 {
		return
	}
	e, ok := rn.tree.ChildAt(ref, name)
	if !ok || !rn.needsPromotion(e.Ino) {
		return
	}
	_ = r.bridged(cancel, caller, e.Ino)
}

// rawRef returns the tree record of node id when rawFS answers its
// read-only requests: a lower entry with no upper copy.
func (r *rawFS) rawRef(id uint64) (layerstore.Ref, bool) {
	ref := r.u.raw.ref(id)
	if ref == 0 || !r.u.pure(id) {
		return 0, false
	}
	return ref, true
}

// forget applies a FORGET: rawFS's part first, the rest to the bridge.
func (r *rawFS) forget(id, n uint64) {
	if n = r.u.raw.forget(id, n); n > 0 {
		r.RawFileSystem.Forget(id, n)
	}
}
