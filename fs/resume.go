package fs

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// resumeUpper rebuilds what a mount keeps in memory about its upper dir
// (which upper inode is which mount inode, which lower entries were copied
// up, which directories no longer merge, which files are metacopies) from
// an upper dir an earlier mount of the same tree left (Options.Resume).
//
// An upper entry at a path where the tree has an entry of the same type is
// taken for its copy-up and gets the lower entry's inode number; the upper
// format cannot tell it from a new file made after the lower one was
// deleted, and the two differ in nothing but that number. Every other entry
// gets a new number. The root is already taken up.
func (u *union) resumeUpper(root *layerstore.Entry) error {
	_, labels, err := readMark(u.rootFd, markLabels)
	if err != nil {
		return err
	}
	if labels {
		u.labels.Store(true)
	}
	_, opaque, err := readMark(u.rootFd, markOpaque)
	if err != nil {
		return err
	}
	if opaque {
		u.unmerged.Store(root.Ino, struct{}{})
		return u.resumeDir(u.rootFd, "", nil)
	}
	return u.resumeDir(u.rootFd, "", root)
}

// resumeDir takes up upper directory p, open as dirfd, whose lower
// directory lower shows through it (nil: none does).
func (u *union) resumeDir(dirfd int, p string, lower *layerstore.Entry) error {
	ents, err := readUpperDir(dirfd, p)
	if err != nil {
		return err
	}
	for i := range ents {
		ue := &ents[i]
		if ue.whiteout {
			continue
		}
		cp := joinPath(p, ue.name)
		var e *layerstore.Entry
		if lower != nil {
			if c, ok := u.tree.ChildOf(lower, ue.name); ok && c.UnixMode()&unix.S_IFMT == ue.st.Mode&unix.S_IFMT {
				e = c
			}
		}
		ino, known := u.knownIno(&ue.st)
		switch {
		case !known && e != nil:
			ino = e.Ino
			u.setIno(&ue.st, ino)
		case !known:
			ino = u.newIno()
			u.setIno(&ue.st, ino)
		}
		if e != nil && e.Ino != ino {
			e = nil // another name of an upper hard link
		}
		if e != nil {
			u.copied.Store(e.Ino, struct{}{})
		}
		if ue.metacopy != "" {
			me := e
			if me == nil || me.Digest != ue.metacopy {
				// A renamed copy-up: its data is the object's all the same.
				st, err := os.Stat(u.objects(ue.metacopy))
				if err != nil {
					return err
				}
				me = &layerstore.Entry{Path: cp, Type: layerstore.TypeReg, Digest: ue.metacopy, Size: st.Size()}
			}
			u.setMetacopy(ino, me)
		}
		if ue.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		next := e
		if e != nil && ue.opaque {
			u.unmerged.Store(e.Ino, struct{}{})
			next = nil
		}
		fd, err := openat(dirfd, ue.name, dirPathFlags, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: cp, Err: err}
		}
		err = u.resumeDir(fd, cp, next)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}
