package layerstore

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Tree is the merged tree of a chain of layers: what a mount of the chain
// shows before any write. It reads its entries in place from a tree file
// (treefile.go), memory-mapped when it comes from the store, so mounts of
// one chain share its pages; nothing is decoded until asked for. A Tree is
// read-only and safe for concurrent readers. A lookup is a binary search
// per path component and readdir one contiguous run of records, so neither
// depends on how many layers made the tree.
//
// Entries a Tree returns are fresh copies the caller may keep, but their
// strings point into the tree's memory: they stay valid until Close.
type Tree struct {
	ChainID digest.Digest
	// NextIno is one more than the largest inode number in the tree; inode
	// numbers from NextIno up are free for the mount's own new files.
	NextIno uint64

	d     *treeData
	close func() error // unmaps a mapped tree; nil otherwise
}

// newTree opens an encoded tree held in b.
func newTree(chainID digest.Digest, b []byte, close func() error) (*Tree, error) {
	d, err := parseTree(b)
	if err != nil {
		return nil, err
	}
	return &Tree{ChainID: chainID, NextIno: d.nextIno, d: d, close: close}, nil
}

// Close releases the tree's memory. Entries taken from it must not be used
// after.
func (t *Tree) Close() error {
	if t == nil || t.close == nil {
		return nil
	}
	c := t.close
	t.close = nil
	return c()
}

// Lookup returns the entry at path ("" for the root).
func (t *Tree) Lookup(path string) (*Entry, bool) {
	i, ok := t.d.lookup(path)
	if !ok {
		return nil, false
	}
	return t.d.entry(i), true
}

// Children returns the entries of directory dir sorted by name.
func (t *Tree) Children(dir string) []*Entry {
	i, ok := t.d.lookup(dir)
	if !ok {
		return nil
	}
	return t.childrenOf(i)
}

// ChildrenOf is Children of a directory entry this tree returned, without
// resolving its path again.
func (t *Tree) ChildrenOf(dir *Entry) []*Entry {
	i, ok := t.recOf(dir)
	if !ok {
		return nil
	}
	return t.childrenOf(i)
}

func (t *Tree) childrenOf(i uint32) []*Entry {
	first, n := t.d.children(i)
	if n == 0 {
		return nil
	}
	es := make([]Entry, n) // one allocation for the lot
	out := make([]*Entry, n)
	for k := range es {
		t.d.fill(first+uint32(k), &es[k])
		out[k] = &es[k]
	}
	return out
}

// Child returns the entry name in directory dir.
func (t *Tree) Child(dir, name string) (*Entry, bool) {
	i, ok := t.d.lookup(dir)
	if !ok {
		return nil, false
	}
	return t.childOf(i, name)
}

// ChildOf is Child of a directory entry this tree returned.
func (t *Tree) ChildOf(dir *Entry, name string) (*Entry, bool) {
	i, ok := t.recOf(dir)
	if !ok {
		return nil, false
	}
	return t.childOf(i, name)
}

func (t *Tree) childOf(i uint32, name string) (*Entry, bool) {
	j, ok := t.d.child(i, name)
	if !ok {
		return nil, false
	}
	return t.d.entry(j), true
}

// recOf finds the record of an entry: the one it came from when it came
// from this tree, else by its path.
func (t *Tree) recOf(e *Entry) (uint32, bool) {
	if e.rec > 0 && e.rec <= t.d.n && t.d.path(e.rec-1) == e.Path {
		return e.rec - 1, true
	}
	return t.d.lookup(e.Path)
}

// Ref names an entry of a tree in four bytes, for holders of many (a
// mount's inodes) that need the entry only now and then; 0 names none.
type Ref uint32

// Ref is the reference of an entry this tree returned (0 for nil or an
// entry of no tree).
func (e *Entry) Ref() Ref {
	if e == nil {
		return 0
	}
	return Ref(e.rec)
}

func (t *Tree) valid(r Ref) bool { return r > 0 && uint32(r) <= t.d.n }

// At decodes the entry r names (nil for 0).
func (t *Tree) At(r Ref) *Entry {
	if !t.valid(r) {
		return nil
	}
	return t.d.entry(uint32(r) - 1)
}

// PathAt is At(r).Path without decoding the rest.
func (t *Tree) PathAt(r Ref) string {
	if !t.valid(r) {
		return ""
	}
	return t.d.path(uint32(r) - 1)
}

// TypeAt is At(r).Type without decoding the rest (0 for none).
func (t *Tree) TypeAt(r Ref) Type {
	if !t.valid(r) {
		return 0
	}
	return Type(t.d.rec(uint32(r) - 1)[9])
}

// InoAt is At(r).Ino without decoding the rest (0 for none).
func (t *Tree) InoAt(r Ref) uint64 {
	if !t.valid(r) {
		return 0
	}
	return binary.LittleEndian.Uint64(t.d.rec(uint32(r) - 1)[32:])
}

// NameAt is At(r).Name() without decoding the rest.
func (t *Tree) NameAt(r Ref) string {
	if !t.valid(r) {
		return ""
	}
	return t.d.name(uint32(r) - 1)
}

// ParentAt is the directory that holds the entry r names (0 for the root
// and for none).
func (t *Tree) ParentAt(r Ref) Ref {
	if !t.valid(r) || r == 1 {
		return 0
	}
	return Ref(binary.LittleEndian.Uint32(t.d.rec(uint32(r) - 1)[28:]) + 1)
}

// XattrAt is At(r).Xattrs[name] without decoding the entry: no allocation,
// the value points into the tree's memory.
func (t *Tree) XattrAt(r Ref, name string) (string, bool) {
	if !t.valid(r) {
		return "", false
	}
	return t.d.xattr(uint32(r)-1, name)
}

// ChildAt is ChildOf of the directory r names.
func (t *Tree) ChildAt(r Ref, name string) (*Entry, bool) {
	if !t.valid(r) {
		return nil, false
	}
	return t.childOf(uint32(r)-1, name)
}

// ChildrenAt is ChildrenOf of the directory r names.
func (t *Tree) ChildrenAt(r Ref) []*Entry {
	if !t.valid(r) {
		return nil
	}
	return t.childrenOf(uint32(r) - 1)
}

// ChildRefsAt is the run of references of the children of the directory r
// names, in name order: first, first+1, ..., first+n-1 (n 0 for none).
func (t *Tree) ChildRefsAt(r Ref) (first Ref, n int) {
	if !t.valid(r) {
		return 0, 0
	}
	f, c := t.d.children(uint32(r) - 1)
	if c == 0 {
		return 0, 0
	}
	return Ref(f + 1), int(c)
}

// Dirent is what a directory listing needs of an entry.
type Dirent struct {
	Name string
	Ino  uint64
	Type Type
}

// DirentsAt lists the directory r names, sorted by name, reading only
// names, inode numbers and types (one allocation).
func (t *Tree) DirentsAt(r Ref) []Dirent {
	if !t.valid(r) {
		return nil
	}
	first, n := t.d.children(uint32(r) - 1)
	if n == 0 {
		return nil
	}
	out := make([]Dirent, n)
	le := binary.LittleEndian
	for k := range out {
		i := first + uint32(k)
		rec := t.d.rec(i)
		out[k] = Dirent{Name: t.d.name(i), Ino: le.Uint64(rec[32:]), Type: Type(rec[9])}
	}
	return out
}

// Len is the number of entries, the root included.
func (t *Tree) Len() int { return int(t.d.n) }

// Walk calls fn for every entry in depth-first name order, the root first.
func (t *Tree) Walk(fn func(e *Entry) error) error {
	var walk func(i uint32) error
	walk = func(i uint32) error {
		e := t.d.entry(i)
		if err := fn(e); err != nil {
			return err
		}
		first, n := t.d.children(i)
		for j := first; j < first+n; j++ {
			if err := walk(j); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(0)
}

// Bytes is the tree's encoding (treefile.go); callers must not modify it.
func (t *Tree) Bytes() []byte { return t.d.b }

// JoinPath joins a directory path and a name in the store's path form.
func JoinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// parentOf is the directory part of a store path ("" for top-level names).
func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// treeBuilder applies layers to a tree held in maps, encoded once at the
// end.
type treeBuilder struct {
	t    *builtTree
	kids map[string]map[string]*Entry
}

// builtTree is a tree being built.
type builtTree struct {
	NextIno uint64
	entries map[string]*Entry // by path; "" is the root
}

// newTreeBuilder starts from base (nil: an empty root). The builder's
// entries share base's strings: base must stay open until finish.
func newTreeBuilder(base *Tree) *treeBuilder {
	b := &treeBuilder{
		t:    &builtTree{NextIno: 2, entries: map[string]*Entry{}},
		kids: map[string]map[string]*Entry{},
	}
	if base == nil {
		root := &Entry{Type: TypeDir, Mode: 0o755, Ino: 1}
		b.t.entries[""] = root
		b.kids[""] = map[string]*Entry{}
		return b
	}
	b.t.NextIno = base.NextIno
	_ = base.Walk(func(e *Entry) error {
		e.rec = 0
		b.t.entries[e.Path] = e
		if e.Type == TypeDir {
			b.kids[e.Path] = map[string]*Entry{}
		}
		if e.Path != "" {
			b.kids[parentOf(e.Path)][e.Name()] = e
		}
		return nil
	})
	return b
}

// remove deletes path and everything below it.
func (b *treeBuilder) remove(p string) {
	e, ok := b.t.entries[p]
	if !ok || p == "" {
		return
	}
	if e.Type == TypeDir {
		b.clear(p)
		delete(b.kids, p)
	}
	delete(b.t.entries, p)
	delete(b.kids[parentOf(p)], e.Name())
}

// clear deletes everything below directory dir.
func (b *treeBuilder) clear(dir string) {
	for name, c := range b.kids[dir] {
		if c.Type == TypeDir {
			b.clear(c.Path)
			delete(b.kids, c.Path)
		}
		delete(b.t.entries, c.Path)
		delete(b.kids[dir], name)
	}
}

// ensureDir makes every missing parent of p a directory, as tar extraction does.
func (b *treeBuilder) ensureDir(dir string) {
	if e, ok := b.t.entries[dir]; ok {
		if e.Type == TypeDir {
			return
		}
		b.remove(dir)
	}
	b.ensureDir(parentOf(dir))
	e := &Entry{Path: dir, Type: TypeDir, Mode: 0o755, Ino: b.t.NextIno, Nlink: 1}
	b.t.NextIno++
	b.t.entries[dir] = e
	b.kids[dir] = map[string]*Entry{}
	b.kids[parentOf(dir)][e.Name()] = e
}

// applyLayer applies one layer's entries, given in key order, in OCI
// changeset order: opaque markers, then whiteouts, then the entries
// themselves. Hard links within the layer share an inode number.
func (b *treeBuilder) applyLayer(entries []*Entry) error {
	// Markers act on the lower layers, but their parent path goes through
	// the layer's own symlinks and directories first, as docker, applying a
	// tar in order, meets them before the markers under them.
	own := map[string]*Entry{}
	for _, e := range entries {
		if e.Type != TypeWhiteout && e.Type != TypeOpaque {
			own[e.Path] = e
		}
	}
	for _, e := range entries {
		if e.Type == TypeOpaque {
			dir := b.resolveDir(parentOf(e.Path), own)
			if d, ok := b.t.entries[dir]; ok && d.Type == TypeDir {
				b.clear(dir)
			}
		}
	}
	for _, e := range entries {
		if e.Type == TypeWhiteout {
			b.remove(JoinPath(b.resolveDir(parentOf(e.Path), own), strings.TrimPrefix(e.Name(), WhiteoutPrefix)))
		}
	}
	inoOf := map[string]uint64{} // layer path -> inode number given in this layer
	// Targets first, then hard links: key order need not be tar order.
	for pass := 0; pass < 2; pass++ {
		for _, e := range entries {
			if e.Type == TypeWhiteout || e.Type == TypeOpaque || (e.HardLink != "") != (pass == 1) {
				continue
			}
			if err := b.add(e, inoOf); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *treeBuilder) add(e *Entry, inoOf map[string]uint64) error {
	n := *e
	n.HardLink = ""
	n.Nlink = 1
	if e.HardLink != "" {
		ino, ok := inoOf[e.HardLink]
		if !ok {
			return fmt.Errorf("layer entry %q: hard link to %q, not a file of this layer: %w", e.Path, e.HardLink, ErrInvalid)
		}
		n.Ino = ino
	}
	// Tar extraction (containerd, umoci) follows symlinks in parent
	// directories, inside the root: so does the tree.
	p := e.Path
	if p != "" {
		p = JoinPath(b.resolveDir(parentOf(p), nil), e.Name())
	}
	n.Path = p
	old, exists := b.t.entries[p]
	if p == "" {
		if e.Type != TypeDir {
			return fmt.Errorf("layer root entry is a %s: %w", e.Type, ErrInvalid)
		}
		n.Ino = 1
		b.t.entries[""] = &n
		return nil
	}
	b.ensureDir(parentOf(p))
	if exists && !(old.Type == TypeDir && n.Type == TypeDir) {
		b.remove(p)
		exists = false
	}
	if n.Ino == 0 {
		if exists {
			n.Ino = old.Ino // a directory keeps its inode when a layer changes its metadata
		} else {
			n.Ino = b.t.NextIno
			b.t.NextIno++
		}
	}
	inoOf[e.Path] = n.Ino
	b.t.entries[p] = &n
	if n.Type == TypeDir && !exists {
		b.kids[p] = map[string]*Entry{}
	}
	b.kids[parentOf(p)][n.Name()] = &n
	return nil
}

// maxSymlinkHops bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinkHops = 40

// resolveDir follows symlinks among the components of dir as they stand in
// the tree, never above the root, and returns the path they lead to. As in
// the kernel (and docker's FollowSymlinkInScope), ".." in a link target
// climbs from where the symlinks so far have led, not from the text of the
// target. An entry of own (the layer being applied) stands in for the
// tree's at its path. Past maxSymlinkHops it stops following, and the entry
// replaces the symlink.
func (b *treeBuilder) resolveDir(dir string, own map[string]*Entry) string {
	if dir == "" {
		return ""
	}
	comps := strings.Split(dir, "/")
	cur := ""
	for hops := 0; len(comps) > 0; {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = parentOf(cur)
			continue
		}
		next := JoinPath(cur, c)
		e, ok := own[next]
		if !ok {
			e, ok = b.t.entries[next]
		}
		if ok && e.Type == TypeSymlink && hops < maxSymlinkHops {
			hops++
			if strings.HasPrefix(e.Link, "/") {
				cur = ""
			}
			comps = append(strings.Split(e.Link, "/"), comps...)
			continue
		}
		cur = next
	}
	return cur
}

// finish computes link counts, sorts children and encodes the tree.
func (b *treeBuilder) finish(chainID digest.Digest) *Tree {
	t := b.t
	links := map[uint64]uint32{}
	subdirs := map[string]uint32{}
	for p, e := range t.entries {
		if e.Type == TypeDir {
			if p != "" {
				subdirs[parentOf(p)]++
			}
		} else {
			links[e.Ino]++
		}
	}
	for p, e := range t.entries {
		if e.Type == TypeDir {
			e.Nlink = 2 + subdirs[p]
		} else {
			e.Nlink = links[e.Ino]
		}
	}
	kids := make(map[string][]*Entry, len(b.kids))
	for dir, m := range b.kids {
		s := make([]*Entry, 0, len(m))
		for _, e := range m {
			s = append(s, e)
		}
		sort.Slice(s, func(i, j int) bool { return s[i].Path < s[j].Path })
		kids[dir] = s
	}
	tree, err := newTree(chainID, encodeTree(t.entries, kids, t.NextIno), nil)
	if err != nil {
		panic(fmt.Sprintf("layerstore: a tree just built does not parse: %v", err)) // a bug, not bad input
	}
	return tree
}

// BuildTree merges layers (base first), each given as its entries in key
// order, into a tree. It is what the store does when it builds a chain's tree;
// exported so that tests and tools can build trees without a store.
func BuildTree(chainID digest.Digest, layers ...[]*Entry) (*Tree, error) {
	b := newTreeBuilder(nil)
	for i, l := range layers {
		if err := b.applyLayer(l); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return b.finish(chainID), nil
}
