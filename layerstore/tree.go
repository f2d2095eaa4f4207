package layerstore

import (
	"fmt"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Tree is the merged tree of a chain of layers, held in memory: what a mount
// of the chain shows before any write. A Tree is read-only once built and safe
// for concurrent readers. Lookups are map accesses and readdir a slice, so
// neither depends on how many layers made the tree.
type Tree struct {
	ChainID digest.Digest
	// NextIno is one more than the largest inode number in the tree; inode
	// numbers from NextIno up are free for the mount's own new files.
	NextIno uint64

	entries map[string]*Entry   // by path; "" is the root
	kids    map[string][]*Entry // directory path -> children sorted by name
}

// Lookup returns the entry at path ("" for the root).
func (t *Tree) Lookup(path string) (*Entry, bool) {
	e, ok := t.entries[path]
	return e, ok
}

// Children returns the entries of directory dir sorted by name. The slice is
// shared: callers must not modify it.
func (t *Tree) Children(dir string) []*Entry {
	return t.kids[dir]
}

// Child returns the entry name in directory dir.
func (t *Tree) Child(dir, name string) (*Entry, bool) {
	return t.Lookup(JoinPath(dir, name))
}

// Len is the number of entries, the root included.
func (t *Tree) Len() int { return len(t.entries) }

// Walk calls fn for every entry in depth-first name order, the root first.
func (t *Tree) Walk(fn func(e *Entry) error) error {
	var walk func(e *Entry) error
	walk = func(e *Entry) error {
		if err := fn(e); err != nil {
			return err
		}
		if e.Type != TypeDir {
			return nil
		}
		for _, c := range t.kids[e.Path] {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(t.entries[""])
}

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

// treeBuilder applies layers to a tree. Children are kept in maps while
// building and sorted once at the end.
type treeBuilder struct {
	t    *Tree
	kids map[string]map[string]*Entry
}

func newTreeBuilder(base *Tree) *treeBuilder {
	b := &treeBuilder{
		t:    &Tree{NextIno: 2, entries: map[string]*Entry{}},
		kids: map[string]map[string]*Entry{},
	}
	if base == nil {
		root := &Entry{Type: TypeDir, Mode: 0o755, Ino: 1}
		b.t.entries[""] = root
		b.kids[""] = map[string]*Entry{}
		return b
	}
	b.t.NextIno = base.NextIno
	for p, e := range base.entries {
		c := *e
		b.t.entries[p] = &c
		if e.Type == TypeDir {
			b.kids[p] = map[string]*Entry{}
		}
	}
	for p, e := range b.t.entries {
		if p != "" {
			b.kids[parentOf(p)][e.Name()] = e
		}
	}
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

// finish computes link counts and sorts children.
func (b *treeBuilder) finish(chainID digest.Digest) *Tree {
	t := b.t
	t.ChainID = chainID
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
	t.kids = make(map[string][]*Entry, len(b.kids))
	for dir, m := range b.kids {
		s := make([]*Entry, 0, len(m))
		for _, e := range m {
			s = append(s, e)
		}
		sort.Slice(s, func(i, j int) bool { return s[i].Path < s[j].Path })
		t.kids[dir] = s
	}
	return t
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
