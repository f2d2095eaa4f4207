// Package treecmp is the reference comparison of the project: it reads a
// directory tree, or a merged layer tree of the store, into a form that two
// trees can be compared in, and reports every difference in one line of text.
//
// A Tree holds, per path, what a container sees of a file: type, permission
// bits (with setuid, setgid and sticky), owner, size and content hash of
// regular files, mtime, extended attributes, symlink target, device numbers,
// link count and inode number. Hard links are compared structurally: two
// trees agree when they partition the same paths into the same groups of
// names sharing an inode, whatever the inode numbers are.
//
// Paths are in the store's form: relative, "/"-separated, "" for the root.
// Nothing here writes to the trees it reads.
package treecmp

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/strata-dev/strata/layerstore"
)

// Options says what Snapshot reads and what Compare looks at. The zero value
// reads and compares everything.
type Options struct {
	// IgnoreMtime leaves modification times of all entries out of Compare.
	IgnoreMtime bool
	// IgnoreDirMtime leaves directory modification times out of Compare,
	// for where the kernel and a file system legitimately differ.
	IgnoreDirMtime bool
	// IgnoreInodes leaves inode numbers out of Compare. Hard-link groups and
	// link counts are still compared.
	IgnoreInodes bool
	// IgnoreRoot leaves the attributes of the root directory out of Compare
	// (its contents are still compared).
	IgnoreRoot bool
	// Exclude, when it returns true for a path, leaves that path and
	// everything below it out of Snapshot and Compare.
	Exclude func(path string) bool
	// IgnoreXattrPrefix lists extended attribute name prefixes that Snapshot
	// does not read and Compare does not look at.
	IgnoreXattrPrefix []string
}

func (o *Options) excluded(p string) bool {
	return o.Exclude != nil && o.Exclude(p)
}

func (o *Options) ignoredXattr(name string) bool {
	for _, p := range o.IgnoreXattrPrefix {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Node is one entry of a Tree.
type Node struct {
	Path     string
	Type     layerstore.Type
	Mode     uint32 // permission bits with setuid, setgid and sticky (07777)
	UID, GID uint32
	Size     int64  // regular files only
	SHA256   string // regular files only: hex sha256 of the content
	Mtime    int64  // unix nanoseconds
	Link     string // symlink target
	Devmajor uint32
	Devminor uint32
	Xattrs   map[string]string // nil when there are none
	Nlink    uint32
	Dev      uint64 // device of a Snapshot's file; 0 in a layer tree
	Ino      uint64
}

// Tree is a comparable form of a file tree: its nodes by path.
type Tree struct {
	Nodes map[string]*Node
}

// Paths returns the paths of t in sorted order.
func (t *Tree) Paths() []string {
	return slices.Sorted(maps.Keys(t.Nodes))
}

// FromLayerTree converts a merged layer tree of the store into a Tree. The
// content hash of a regular file is the hex of its Entry.Digest.
func FromLayerTree(lt *layerstore.Tree) *Tree {
	t := &Tree{Nodes: make(map[string]*Node, lt.Len())}
	_ = lt.Walk(func(e *layerstore.Entry) error {
		n := &Node{
			Path:     e.Path,
			Type:     e.Type,
			Mode:     e.Mode & 0o7777,
			UID:      e.UID,
			GID:      e.GID,
			Mtime:    e.Mtime,
			Link:     e.Link,
			Devmajor: e.Devmajor,
			Devminor: e.Devminor,
			Nlink:    e.Nlink,
			Ino:      e.Ino,
		}
		if e.Type == layerstore.TypeReg {
			n.Size = e.Size
			n.SHA256 = e.Digest.Encoded()
		}
		if len(e.Xattrs) > 0 {
			n.Xattrs = maps.Clone(e.Xattrs)
		}
		t.Nodes[e.Path] = n
		return nil
	})
	return t
}

// Xattrs whose absence on one side is not a difference: a security label
// depends on the host's policy, and an ACL xattr that is missing means the
// mode bits say it all. When both sides have one, the values are compared.
func optionalXattr(name string) bool {
	return name == "security.selinux" || strings.HasPrefix(name, "system.posix_acl_")
}

// Compare returns one line per difference between a and b, in path order;
// nil when they are equal. Lines look like "usr/bin/x: mode 0755 != 0644"
// (a's value first), "missing in B: etc/foo", "missing in A: etc/bar" and
// "hard-link groups differ: …". The root is shown as ".".
//
// Sizes and content are compared for regular files only. A directory's link
// count is compared only when both sides report more than 1: a file system
// that reports 1 says it does not count subdirectories.
func Compare(a, b *Tree, opt Options) []string {
	var diffs []string
	report := func(format string, args ...any) {
		diffs = append(diffs, fmt.Sprintf(format, args...))
	}
	paths := map[string]bool{}
	for p := range a.Nodes {
		paths[p] = true
	}
	for p := range b.Nodes {
		paths[p] = true
	}
	var common []string
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		if excludedPath(&opt, p) {
			continue
		}
		na, okA := a.Nodes[p]
		nb, okB := b.Nodes[p]
		switch {
		case !okB:
			report("missing in B: %s", show(p))
			continue
		case !okA:
			report("missing in A: %s", show(p))
			continue
		}
		if na.Type != nb.Type {
			report("%s: type %s != %s", show(p), na.Type, nb.Type)
			continue
		}
		common = append(common, p)
		if p == "" && opt.IgnoreRoot {
			continue
		}
		compareNode(na, nb, &opt, report)
	}
	diffs = append(diffs, compareLinkGroups(a, b, common)...)
	return diffs
}

func compareNode(a, b *Node, opt *Options, report func(string, ...any)) {
	p := show(a.Path)
	if a.Mode != b.Mode {
		report("%s: mode %04o != %04o", p, a.Mode, b.Mode)
	}
	if a.UID != b.UID || a.GID != b.GID {
		report("%s: owner %d:%d != %d:%d", p, a.UID, a.GID, b.UID, b.GID)
	}
	switch a.Type {
	case layerstore.TypeReg:
		if a.Size != b.Size {
			report("%s: size %d != %d", p, a.Size, b.Size)
		}
		if a.SHA256 != b.SHA256 {
			report("%s: content sha256 %s != %s", p, short(a.SHA256), short(b.SHA256))
		}
	case layerstore.TypeSymlink:
		if a.Link != b.Link {
			report("%s: symlink target %q != %q", p, a.Link, b.Link)
		}
	case layerstore.TypeChar, layerstore.TypeBlock:
		if a.Devmajor != b.Devmajor || a.Devminor != b.Devminor {
			report("%s: device %d,%d != %d,%d", p, a.Devmajor, a.Devminor, b.Devmajor, b.Devminor)
		}
	}
	if !opt.IgnoreMtime && !(opt.IgnoreDirMtime && a.Type == layerstore.TypeDir) && a.Mtime != b.Mtime {
		report("%s: mtime %d != %d", p, a.Mtime, b.Mtime)
	}
	if a.Type == layerstore.TypeDir {
		if a.Nlink > 1 && b.Nlink > 1 && a.Nlink != b.Nlink {
			report("%s: nlink %d != %d", p, a.Nlink, b.Nlink)
		}
	} else if a.Nlink != b.Nlink {
		report("%s: nlink %d != %d", p, a.Nlink, b.Nlink)
	}
	if !opt.IgnoreInodes && a.Ino != b.Ino {
		report("%s: inode %d != %d", p, a.Ino, b.Ino)
	}
	names := map[string]bool{}
	for k := range a.Xattrs {
		names[k] = true
	}
	for k := range b.Xattrs {
		names[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(names)) {
		if opt.ignoredXattr(k) {
			continue
		}
		va, okA := a.Xattrs[k]
		vb, okB := b.Xattrs[k]
		switch {
		case okA && okB:
			if va != vb {
				report("%s: xattr %s %q != %q", p, k, va, vb)
			}
		case optionalXattr(k):
		case okA:
			report("%s: xattr %s missing in B", p, k)
		default:
			report("%s: xattr %s missing in A", p, k)
		}
	}
}

// excludedPath reports whether p or one of its parents is excluded.
func excludedPath(opt *Options, p string) bool {
	if opt.Exclude == nil || p == "" {
		return opt.excluded(p)
	}
	if opt.excluded("") {
		return true
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && opt.excluded(p[:i]) {
			return true
		}
	}
	return opt.excluded(p)
}

// compareLinkGroups compares how the paths both trees have are partitioned
// into hard-link groups (non-directories sharing an inode).
func compareLinkGroups(a, b *Tree, common []string) []string {
	ga, gb := linkGroups(a, common), linkGroups(b, common)
	var diffs []string
	seen := map[string]bool{}
	for _, p := range common {
		sa, sb := ga[p], gb[p]
		if sa == sb {
			continue
		}
		key := sa + "\x00" + sb
		if seen[key] {
			continue
		}
		seen[key] = true
		diffs = append(diffs, fmt.Sprintf("hard-link groups differ: %s: A links {%s}, B links {%s}", show(p), sa, sb))
	}
	return diffs
}

// linkGroups maps each of paths that is a non-directory of t to its group:
// the sorted, comma-joined list of paths (among paths) sharing its inode.
func linkGroups(t *Tree, paths []string) map[string]string {
	type id struct{ dev, ino uint64 }
	byIno := map[id][]string{}
	for _, p := range paths {
		if n := t.Nodes[p]; n.Type != layerstore.TypeDir {
			k := id{n.Dev, n.Ino}
			byIno[k] = append(byIno[k], p) // paths is sorted, so each group is
		}
	}
	g := map[string]string{}
	for _, ps := range byIno {
		shown := make([]string, len(ps))
		for i, p := range ps {
			shown[i] = show(p)
		}
		s := strings.Join(shown, ",")
		for _, p := range ps {
			g[p] = s
		}
	}
	return g
}

func show(p string) string {
	if p == "" {
		return "."
	}
	return p
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return "(none)"
	}
	return h
}
