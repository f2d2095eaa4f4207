package fs

import (
	"archive/tar"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// WriteLayer writes the changes in upper dir upper over tree as an OCI layer
// tar: every upper entry with its attributes (xattrs as PAX SCHILY.xattr
// records, times to the nanosecond), ".wh.NAME" for a deleted lower entry,
// ".wh..wh..opq" right after a directory that hides the lower directory of
// its path, hard links as links to the first name written, and the content
// of metacopy files from their objects. Directories come before what they
// hold, names in order. A name that is an unchanged copy of its lower entry
// (copied up because another name of its hard-link group changed) is left
// out, as Diff leaves it out, unless a new or changed name shares its inode:
// then every name of the inode is written, so that they stay one inode in
// the layer. The root is written only when its mode, owner or
// xattrs changed. Like Diff, it reads the upper dir only; a live mount may
// go on changing it, so callers wanting a consistent layer stop writers
// first.
func WriteLayer(w io.Writer, upper string, tree *layerstore.Tree, objects func(digest.Digest) string) error {
	return WriteLayerSkipping(w, upper, tree, objects, nil)
}

// WriteLayerSkipping is WriteLayer leaving out what skip names and the upper
// dir only added, empty (see Skip).
func WriteLayerSkipping(w io.Writer, upper string, tree *layerstore.Tree, objects func(digest.Digest) string, skip Skip) error {
	lw := &layerWriter{tw: tar.NewWriter(w), tree: tree, objects: objects, skip: skip, links: map[uint64]string{}}
	root, err := openUpperRoot("write layer", upper)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	st, err := fstat(root)
	if err != nil {
		return &os.PathError{Op: "write layer", Path: upper, Err: err}
	}
	if te, ok := tree.Lookup(""); ok {
		same, err := sameDirMeta(root, ".", &st, te)
		if err != nil {
			return fmt.Errorf("write layer %s: %w", upper, err)
		}
		if !same {
			if err := lw.header(root, "", upperEntry{name: ".", st: st}); err != nil {
				return fmt.Errorf("write layer %s: %w", upper, err)
			}
		}
	}
	lw.planning, lw.needed = true, map[uint64]bool{}
	if err := lw.walk(root, "", true); err != nil {
		return fmt.Errorf("write layer %s: %w", upper, err)
	}
	lw.planning = false
	if err := lw.walk(root, "", true); err != nil {
		return fmt.Errorf("write layer %s: %w", upper, err)
	}
	return lw.tw.Close()
}

type layerWriter struct {
	tw      *tar.Writer
	tree    *layerstore.Tree
	skip    Skip
	objects func(digest.Digest) string
	links   map[uint64]string // upper inode -> first path written, for hard links

	// Names that are unchanged copies of their lower entry (copied up with
	// their hard-link group) are left out, unless another name of their
	// inode is new or changed: then all are written, so the layer keeps
	// them one inode. A first pass (planning) finds those inodes.
	planning bool
	needed   map[uint64]bool // upper inode -> a name of it is new or changed
}

// walk writes upper directory p, open as dirfd, or, planning, only notes
// which hard-linked inodes must be written.
func (lw *layerWriter) walk(dirfd int, p string, merged bool) error {
	ents, err := readUpperDir(dirfd, p)
	if err != nil {
		return err
	}
	for i := range ents {
		ue := &ents[i]
		cp := joinPath(p, ue.name)
		te, inTree := lw.tree.Lookup(cp)
		if !inTree {
			if skipped, err := skipEmpty(lw.skip, dirfd, cp, ue); err != nil {
				return err
			} else if skipped {
				continue
			}
		}
		isDir := ue.st.Mode&unix.S_IFMT == unix.S_IFDIR
		if !isDir && !ue.whiteout {
			if lw.planning && ue.st.Nlink <= 1 {
				continue
			}
			same := false
			if merged && inTree && te.Type != layerstore.TypeDir {
				var err error
				if same, err = sameAsLower(dirfd, ue, te); err != nil {
					return err
				}
			}
			if lw.planning {
				if !same {
					lw.needed[ue.st.Ino] = true
				}
				continue
			}
			if same && !(ue.st.Nlink > 1 && lw.needed[ue.st.Ino]) {
				continue
			}
		}
		if lw.planning {
			if isDir {
				if err := lw.walkDir(dirfd, cp, ue, merged && inTree && te.Type == layerstore.TypeDir); err != nil {
					return err
				}
			}
			continue
		}
		if ue.whiteout {
			if merged && inTree {
				if err := lw.marker(joinPath(p, layerstore.WhiteoutPrefix+ue.name)); err != nil {
					return err
				}
			}
			continue
		}
		if err := lw.header(dirfd, cp, *ue); err != nil {
			return err
		}
		if !isDir {
			continue
		}
		lowerDir := merged && inTree && te.Type == layerstore.TypeDir
		if lowerDir && ue.opaque {
			if err := lw.marker(joinPath(cp, layerstore.OpaqueName)); err != nil {
				return err
			}
		}
		if err := lw.walkDir(dirfd, cp, ue, lowerDir); err != nil {
			return err
		}
	}
	return nil
}

// walkDir walks upper directory ue of dirfd, at merged path p; lowerDir
// says whether the tree has a directory there showing through its parent.
func (lw *layerWriter) walkDir(dirfd int, p string, ue *upperEntry, lowerDir bool) error {
	fd, err := openat(dirfd, ue.name, dirPathFlags, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	return lw.walk(fd, p, lowerDir && !ue.opaque)
}

// marker writes an empty whiteout or opaque marker entry.
func (lw *layerWriter) marker(name string) error {
	return lw.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Format: tar.FormatPAX, ModTime: time.Unix(0, 0)})
}

// header writes upper entry ue, named ue.name in upper directory dirfd and
// at merged path p (the root when p is ""), and, for a regular file, its
// content.
func (lw *layerWriter) header(dirfd int, p string, ue upperEntry) error {
	st := &ue.st
	h := &tar.Header{
		Name:    p,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
	x, err := userXattrsAt(dirfd, ue.name)
	if err != nil {
		return err
	}
	if len(x) > 0 {
		h.PAXRecords = map[string]string{}
		for _, k := range sortedKeys(x) {
			h.PAXRecords["SCHILY.xattr."+k] = x[k]
		}
	}
	var content func() (io.ReadCloser, error)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		h.Typeflag = tar.TypeDir
		if p == "" {
			h.Name = "./"
		} else {
			h.Name = p + "/"
		}
	case unix.S_IFLNK:
		h.Typeflag = tar.TypeSymlink
		target, err := readlinkAt(dirfd, ue.name)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: p, Err: err}
		}
		h.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	case unix.S_IFREG:
		h.Typeflag = tar.TypeReg
		h.Size = st.Size
		content = func() (io.ReadCloser, error) {
			r, size, err := openUpperFileAt(dirfd, ue.name, lw.objects)
			if err == nil && size != h.Size {
				r.Close()
				err = fmt.Errorf("write layer: %s changed while it was read: %w", p, layerstore.ErrSizeMismatch)
			}
			return r, err
		}
	default:
		return nil // sockets: not in a layer
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
		if first, ok := lw.links[st.Ino]; ok {
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			h.Devmajor, h.Devminor = 0, 0
			return lw.tw.WriteHeader(h)
		}
		lw.links[st.Ino] = p
	}
	if err := lw.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write layer: %s: %w", p, err)
	}
	if content == nil {
		return nil
	}
	r, err := content()
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(lw.tw, io.LimitReader(r, h.Size))
	if err != nil {
		return fmt.Errorf("write layer: %s: %w", p, err)
	}
	if n != h.Size {
		return fmt.Errorf("write layer: %s: %d of %d bytes: %w", p, n, h.Size, layerstore.ErrSizeMismatch)
	}
	return nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
