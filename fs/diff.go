package fs

import (
	"fmt"
	"maps"
	"os"
	"slices"

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
// has not is A (added); a deleted path is D, and what was below a deleted
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
	st, err := lstat(upper)
	if err != nil {
		return nil, &os.PathError{Op: "diff", Path: upper, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("diff %s: not a directory: %w", upper, layerstore.ErrInvalid)
	}
	d := &differ{tree: tree, upper: upper, listed: map[string]bool{}, at: map[string]int{}}
	if err := d.walk("", true); err != nil {
		return nil, err
	}
	return d.changes, nil
}

type differ struct {
	tree    *layerstore.Tree
	upper   string
	changes []Change
	listed  map[string]bool // directories already listed
	at      map[string]int  // unlisted directories being walked: where in changes they belong
}

func (d *differ) abs(p string) string {
	if p == "" {
		return d.upper
	}
	return d.upper + "/" + p
}

// add lists a change. An added or deleted entry, or one whose type changed
// (retype), lists its directory as changed too, unless it is listed, in the
// place the walk passed it.
func (d *differ) add(kind byte, p string, dir, retype bool) {
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

// walk lists the changes in upper directory p. merged says whether the
// lower directory of p shows through it; when it does not, whatever the
// tree has in p and the upper dir has not is deleted.
func (d *differ) walk(p string, merged bool) error {
	ents, err := readUpperDir(d.abs(p))
	if err != nil {
		return err
	}
	var hidden []*layerstore.Entry
	if te, ok := d.tree.Lookup(p); ok && te.Type == layerstore.TypeDir && !merged {
		hidden = d.tree.Children(p)
	}
	i, j := 0, 0
	for i < len(ents) || j < len(hidden) {
		if i < len(ents) && (j >= len(hidden) || ents[i].name <= hidden[j].Name()) {
			if j < len(hidden) && ents[i].name == hidden[j].Name() {
				j++
			}
			if err := d.entry(p, &ents[i], merged); err != nil {
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

func (d *differ) entry(p string, ue *upperEntry, merged bool) error {
	cp := joinPath(p, ue.name)
	te, inTree := d.tree.Lookup(cp)
	if ue.whiteout {
		if merged && inTree {
			d.add(ChangeDelete, cp, false, false)
		}
		return nil
	}
	kind := byte(ChangeAdd)
	isDir := ue.st.Mode&unix.S_IFMT == unix.S_IFDIR
	retype := false
	if inTree {
		kind = ChangeModify
		retype = isDir != (te.Type == layerstore.TypeDir)
	}
	if !isDir {
		d.add(kind, cp, false, retype)
		return nil
	}
	childMerged := merged && inTree && te.Type == layerstore.TypeDir && !ue.opaque
	same := false
	if childMerged {
		var err error
		if same, err = sameDirMeta(d.abs(cp), &ue.st, te); err != nil {
			return err
		}
	}
	if !same {
		d.add(kind, cp, true, retype)
	} else {
		d.at[cp] = len(d.changes)
		defer delete(d.at, cp)
	}
	return d.walk(cp, childMerged)
}

// sameDirMeta reports whether the upper directory at abs has the mode, owner
// and xattrs of lower directory te. Times are left out: the kernel changes
// them as entries come and go, which the listing shows better.
func sameDirMeta(abs string, st *unix.Stat_t, te *layerstore.Entry) (bool, error) {
	if st.Mode&0o7777 != te.Mode&0o7777 || st.Uid != te.UID || st.Gid != te.GID {
		return false, nil
	}
	x, err := userXattrs(abs)
	if err != nil {
		return false, err
	}
	if len(x) == 0 && len(te.Xattrs) == 0 {
		return true, nil
	}
	return maps.Equal(x, te.Xattrs), nil
}
