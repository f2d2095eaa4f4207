package treecmp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// Snapshot reads the tree at root into a Tree, with lstat (symlinks are not
// followed) and without changing anything: regular files are opened
// read-only to hash their content. Extended attributes are read from every
// namespace llistxattr lists and lgetxattr lets us read, except the prefixes
// opt.IgnoreXattrPrefix names; opt.Exclude prunes paths. Sockets have no
// place in an image and are an error.
func Snapshot(root string, opt Options) (*Tree, error) {
	t := &Tree{Nodes: map[string]*Node{}}
	err := filepath.WalkDir(root, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, full)
		if err != nil {
			return err
		}
		p := filepath.ToSlash(rel)
		if p == "." {
			p = ""
		}
		if opt.excluded(p) {
			if d.IsDir() && p != "" {
				return fs.SkipDir
			}
			if p == "" {
				return fs.SkipAll
			}
			return nil
		}
		n, err := readNode(full, p, &opt)
		if err != nil {
			return err
		}
		t.Nodes[p] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", root, err)
	}
	return t, nil
}

func readNode(full, p string, opt *Options) (*Node, error) {
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: full, Err: err}
	}
	n := &Node{
		Path:  p,
		Mode:  st.Mode & 0o7777,
		UID:   st.Uid,
		GID:   st.Gid,
		Mtime: st.Mtim.Nano(),
		Nlink: uint32(st.Nlink),
		Dev:   st.Dev,
		Ino:   st.Ino,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		n.Type = layerstore.TypeReg
		n.Size = st.Size
		h, err := hashFile(full)
		if err != nil {
			return nil, err
		}
		n.SHA256 = h
	case unix.S_IFDIR:
		n.Type = layerstore.TypeDir
	case unix.S_IFLNK:
		n.Type = layerstore.TypeSymlink
		l, err := os.Readlink(full)
		if err != nil {
			return nil, err
		}
		n.Link = l
	case unix.S_IFCHR, unix.S_IFBLK:
		n.Type = layerstore.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			n.Type = layerstore.TypeBlock
		}
		n.Devmajor = unix.Major(st.Rdev)
		n.Devminor = unix.Minor(st.Rdev)
	case unix.S_IFIFO:
		n.Type = layerstore.TypeFifo
	default:
		return nil, fmt.Errorf("%s: unsupported file type %#o", full, st.Mode&unix.S_IFMT)
	}
	x, err := readXattrs(full, opt)
	if err != nil {
		return nil, err
	}
	n.Xattrs = x
	return n, nil
}

func hashFile(full string) (string, error) {
	f, err := os.OpenFile(full, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.OpenFile(full, os.O_RDONLY|unix.O_NOFOLLOW, 0) // O_NOATIME needs ownership or CAP_FOWNER
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", full, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readXattrs returns the extended attributes of full (not following a
// symlink), nil when there are none. An attribute listed but not readable
// (ENODATA after a race, EACCES, EPERM) is left out; a file system without
// xattr support has none.
func readXattrs(full string, opt *Options) (map[string]string, error) {
	buf := make([]byte, 1024)
	var n int
	for {
		var err error
		n, err = unix.Llistxattr(full, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Llistxattr(full, nil)
			if err != nil {
				return nil, &fs.PathError{Op: "llistxattr", Path: full, Err: err}
			}
			buf = make([]byte, sz+64)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "llistxattr", Path: full, Err: err}
		}
		break
	}
	var out map[string]string
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) == 0 || opt.ignoredXattr(string(name)) {
			continue
		}
		v, err := getXattr(full, string(name))
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "lgetxattr " + string(name), Path: full, Err: err}
		}
		if out == nil {
			out = map[string]string{}
		}
		out[string(name)] = v
	}
	return out, nil
}

func getXattr(full, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(full, name, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Lgetxattr(full, name, nil)
			if err != nil {
				return "", err
			}
			buf = make([]byte, sz+64)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}
