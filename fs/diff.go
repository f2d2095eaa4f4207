package fs

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// Change is one difference between a mount and the tree it was made from,
// as docker diff reports it.
type Change struct {
	Kind byte   // ChangeAdd, ChangeModify or ChangeDelete
	Path string // in the tree's form: relative, "/"-separated
}

// Change kinds.
const (
	ChangeAdd    = 'A'
	ChangeModify = 'C'
	ChangeDelete = 'D'
)

// String formats c as docker diff prints it: "C /etc/passwd".
func (c Change) String() string { return string(c.Kind) + " /" + c.Path }

// Diff lists the changes recorded in upper dir upper over tree, with docker
// diff's semantics and order: a depth-first walk of the upper dir, names in
// order within each directory. A path the tree has is C (changed), one it
// has not is A (added), one the upper dir has only as an unchanged copy of
// the lower entry (a name of a hard-link group another name of which
// changed) is not listed; a deleted path is D, and what was below a deleted
// directory is not listed. A directory is listed when its mode, owner or
// xattrs changed, when it replaces what the tree had there, or (as C, just
// before its first A or D child) when an entry was added to or deleted from
// it, or an entry in it turned from a directory into something else or back
// (its link count changed); a directory that is in the upper dir only because
// something below it changed is not. The root is never listed. (Docker lists
// such a directory just before the child that made it changed; Diff lists
// it where the walk passed it, so every directory comes before its entries.) Diff reads the upper dir only, so it works from another
// process while the mount is live or after it ended.
func Diff(upper string, tree *layerstore.Tree) ([]Change, error) {
	return DiffSkipping(upper, tree, nil)
}

// Skip names paths (merged, without a leading slash) that Diff and
// WriteLayer leave out when the upper dir only added them empty: an empty
// regular file or directory the tree has not. A container's runtime makes
// such mountpoints (/proc, /etc/hosts, a volume's path) in its root; docker
// keeps them in an init layer below the container's, so that they are no
// change of the container's.
type Skip func(path string) bool

// DiffSkipping is Diff leaving out what skip names and the upper dir only
// added, empty.
func DiffSkipping(upper string, tree *layerstore.Tree, skip Skip) ([]Change, error) {
	root, err := openUpperRoot("diff", upper)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	d := &differ{tree: tree, skip: skip, listed: map[string]bool{}, at: map[string]int{}}
	if err := d.walk(root, "", true); err != nil {
		return nil, fmt.Errorf("diff %s: %w", upper, err)
	}
	return d.changes, nil
}

// openUpperRoot opens upper dir upper (O_PATH) for a reader of its format,
// which then walks it by descriptor: its paths may be longer than PATH_MAX.
func openUpperRoot(op, upper string) (int, error) {
	fd, err := openat(unix.AT_FDCWD, upper, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("%s %s: not a directory: %w", op, upper, layerstore.ErrInvalid)
	}
	if err != nil {
		return -1, &os.PathError{Op: op, Path: upper, Err: err}
	}
	return fd, nil
}

type differ struct {
	tree    *layerstore.Tree
	skip    Skip
	changes []Change
	listed  map[string]bool // directories already listed
	at      map[string]int  // unlisted directories being walked: where in changes they belong
}

// add lists a change. An added or deleted entry, or one whose type changed
// (retype), lists its directory as changed too, unless it is listed, in the
// place the walk passed it.
func (d *differ) add(kind byte, p string, dir, retype bool) {
	// p may point into a memory-mapped tree file, which the caller unmaps
	// once Diff returns; the change outlives it.
	p = strings.Clone(p)
	if kind != ChangeModify || retype {
		if parent := parentPath(p); parent != "" && !d.listed[parent] {
			c := Change{ChangeModify, parent}
			if i, ok := d.at[parent]; ok {
				d.changes = slices.Insert(d.changes, i, c)
			} else {
				d.changes = append(d.changes, c)
			}
			d.listed[parent] = true
		}
	}
	d.changes = append(d.changes, Change{kind, p})
	if dir {
		d.listed[p] = true
	}
}

// walk lists the changes in upper directory p, open as dirfd. merged says
// whether the lower directory of p shows through it; when it does not,
// whatever the tree has in p and the upper dir has not is deleted.
func (d *differ) walk(dirfd int, p string, merged bool) error {
	ents, err := readUpperDir(dirfd, p)
	if err != nil {
		return err
	}
	var hidden []*layerstore.Entry
	if te, ok := d.tree.Lookup(p); ok && te.Type == layerstore.TypeDir && !merged {
		hidden = d.tree.ChildrenOf(te)
	}
	i, j := 0, 0
	for i < len(ents) || j < len(hidden) {
		if i < len(ents) && (j >= len(hidden) || ents[i].name <= hidden[j].Name()) {
			if j < len(hidden) && ents[i].name == hidden[j].Name() {
				j++
			}
			if err := d.entry(dirfd, p, &ents[i], merged); err != nil {
				return err
			}
			i++
			continue
		}
		d.add(ChangeDelete, hidden[j].Path, false, false)
		j++
	}
	return nil
}

func (d *differ) entry(dirfd int, p string, ue *upperEntry, merged bool) error {
	cp := joinPath(p, ue.name)
	te, inTree := d.tree.Lookup(cp)
	if ue.whiteout {
		if merged && inTree {
			d.add(ChangeDelete, cp, false, false)
		}
		return nil
	}
	if !inTree {
		if skipped, err := skipEmpty(d.skip, dirfd, cp, ue); skipped || err != nil {
			return err
		}
	}
	kind := byte(ChangeAdd)
	isDir := ue.st.Mode&unix.S_IFMT == unix.S_IFDIR
	retype := false
	if inTree {
		kind = ChangeModify
		retype = isDir != (te.Type == layerstore.TypeDir)
	}
	if !isDir {
		if merged && inTree && !retype {
			same, err := sameAsLower(dirfd, ue, te)
			if err != nil {
				return err
			}
			if same {
				return nil // copied up with its hard-link group, and nothing else
			}
		}
		d.add(kind, cp, false, retype)
		return nil
	}
	childMerged := merged && inTree && te.Type == layerstore.TypeDir && !ue.opaque
	same := false
	if childMerged {
		var err error
		if same, err = sameDirMeta(dirfd, ue.name, &ue.st, te); err != nil {
			return err
		}
	}
	if !same {
		d.add(kind, cp, true, retype)
	} else {
		d.at[cp] = len(d.changes)
		defer delete(d.at, cp)
	}
	fd, err := openat(dirfd, ue.name, dirPathFlags, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: cp, Err: err}
	}
	defer unix.Close(fd)
	return d.walk(fd, cp, childMerged)
}

// sameAsLower reports whether upper non-directory ue, named ue.name in
// dirfd, is lower entry te unchanged: same type, mode, owner, mtime and
// xattrs, and the same data (a metacopy of te's object with nothing
// appended, the same link target, the same device). Such an entry is in the
// upper dir only because another name of its hard-link group changed (the
// whole group is copied up then), or because a change put everything back;
// as for docker, its link count alone is no change.
func sameAsLower(dirfd int, ue *upperEntry, te *layerstore.Entry) (bool, error) {
	st := &ue.st
	if st.Mode&unix.S_IFMT != te.UnixMode()&unix.S_IFMT || st.Mode&0o7777 != te.Mode&0o7777 ||
		st.Uid != te.UID || st.Gid != te.GID || st.Mtim.Nano() != te.Mtime {
		return false, nil
	}
	switch te.Type {
	case layerstore.TypeReg:
		if ue.metacopy == "" || ue.metacopy != te.Digest || st.Size != te.Size {
			return false, nil
		}
	case layerstore.TypeSymlink:
		target, err := readlinkAt(dirfd, ue.name)
		if err != nil || target != te.Link {
			return false, err
		}
	case layerstore.TypeChar, layerstore.TypeBlock:
		if unix.Major(st.Rdev) != te.Devmajor || unix.Minor(st.Rdev) != te.Devminor {
			return false, nil
		}
	}
	x, err := userXattrsAt(dirfd, ue.name)
	if err != nil {
		return false, err
	}
	if len(x) == 0 && len(te.Xattrs) == 0 {
		return true, nil
	}
	return maps.Equal(x, te.Xattrs), nil
}

// sameDirMeta reports whether upper directory name in dirfd, whose lstat is
// st, has the mode, owner and xattrs of lower directory te. Times are left
// out: the kernel changes them as entries come and go, which the listing
// shows better.
func sameDirMeta(dirfd int, name string, st *unix.Stat_t, te *layerstore.Entry) (bool, error) {
	if st.Mode&0o7777 != te.Mode&0o7777 || st.Uid != te.UID || st.Gid != te.GID {
		return false, nil
	}
	x, err := userXattrsAt(dirfd, name)
	if err != nil {
		return false, err
	}
	if len(x) == 0 && len(te.Xattrs) == 0 {
		return true, nil
	}
	return maps.Equal(x, te.Xattrs), nil
}

// skipEmpty says whether upper entry ue (at merged path p, which the tree
// has not, in dirfd) is one skip names and is empty: a regular file of no
// bytes, or a directory holding nothing but such entries (the directories
// made on the way to a deeper mountpoint).
func skipEmpty(skip Skip, dirfd int, p string, ue *upperEntry) (bool, error) {
	if skip == nil || ue.whiteout || !skip(p) {
		return false, nil
	}
	switch ue.st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return ue.st.Size == 0 && ue.metacopy == "", nil
	case unix.S_IFDIR:
		fd, err := openat(dirfd, ue.name, dirPathFlags, 0)
		if err != nil {
			return false, &os.PathError{Op: "open", Path: p, Err: err}
		}
		defer unix.Close(fd)
		ents, err := readUpperDir(fd, p)
		if err != nil || ue.opaque {
			return false, err
		}
		for i := range ents {
			if ok, err := skipEmpty(skip, fd, joinPath(p, ents[i].name), &ents[i]); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	}
	return false, nil
}
