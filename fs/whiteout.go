package fs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// XattrPrefix is the namespace of the attributes strata keeps on entries of
// an upper dir (trusted.*, so writable mounts need a root server). See the
// package doc for the names and what they mean. Tools that compare an upper
// dir with a mount should ignore it.
const XattrPrefix = "trusted.strata."

// Marker names, appended to the prefix.
const (
	markWhiteout = "whiteout" // on a char device 0/0: a deleted lower entry
	markOpaque   = "opaque"   // on a directory: lower entries do not show through
	markMetacopy = "metacopy" // on a regular file: digest of the object holding the data
	markLabels   = "labels"   // on the upper root: an SELinux label was set through a mount of it
)

// reservedXattr reports whether name is one of strata's own attributes,
// which a mount neither shows nor lets anyone set.
func reservedXattr(name string) bool { return strings.HasPrefix(name, XattrPrefix) }

// readMark reads marker k of the upper entry open as fd.
func readMark(fd int, k string) ([]byte, bool, error) {
	v, err := fgetxattr(fd, XattrPrefix+k)
	if err == nil {
		return v, true, nil
	}
	if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
		return nil, false, nil
	}
	return nil, false, &os.PathError{Op: "getxattr " + XattrPrefix + k, Path: procPath(fd), Err: err}
}

// readMarkAt reads marker k of name in directory dirfd.
func readMarkAt(dirfd int, name, k string) ([]byte, bool, error) {
	fd, err := pinAt(dirfd, name)
	if err != nil {
		return nil, false, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	return readMark(fd, k)
}

// maybeWhiteout reports whether st could be a whiteout: the marker xattr
// decides.
func maybeWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// isWhiteout reports whether name in directory dirfd, whose lstat is st, is
// a whiteout.
func isWhiteout(dirfd int, name string, st *unix.Stat_t) (bool, error) {
	if !maybeWhiteout(st) {
		return false, nil
	}
	_, ok, err := readMarkAt(dirfd, name, markWhiteout)
	return ok, err
}

// upperEntry is one entry of an upper dir as an offline reader sees it.
type upperEntry struct {
	name     string
	st       unix.Stat_t
	whiteout bool
	opaque   bool
	metacopy digest.Digest // "" unless the data is still in this object
}

// readUpperDir reads the entries of the upper directory open as dirfd,
// sorted by name, with their markers. dir names it in errors.
func readUpperDir(dirfd int, dir string) ([]upperEntry, error) {
	ents, err := readDirents(dirfd, ".")
	if err != nil {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: err}
	}
	out := make([]upperEntry, 0, len(ents))
	for _, d := range ents {
		st, err := fstatat(dirfd, d.name)
		if errors.Is(err, unix.ENOENT) {
			continue // removed while we read: a live mount
		}
		if err != nil {
			return nil, &os.PathError{Op: "lstat", Path: joinPath(dir, d.name), Err: err}
		}
		ue := upperEntry{name: d.name, st: st}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			ue.whiteout, err = isWhiteout(dirfd, d.name, &st)
		case unix.S_IFDIR:
			_, ue.opaque, err = readMarkAt(dirfd, d.name, markOpaque)
		case unix.S_IFREG:
			ue.metacopy, err = metacopyAt(dirfd, d.name)
		}
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", joinPath(dir, d.name), err)
		}
		out = append(out, ue)
	}
	slices.SortFunc(out, func(a, b upperEntry) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// userXattrs returns the attributes of the upper entry open as fd that
// belong to the file (strata's own left out), nil when there are none.
func userXattrs(fd int) (map[string]string, error) {
	names, err := flistxattr(fd)
	if err != nil {
		return nil, &os.PathError{Op: "listxattr", Path: procPath(fd), Err: err}
	}
	var m map[string]string
	for _, name := range names {
		if reservedXattr(name) {
			continue
		}
		v, err := fgetxattr(fd, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: procPath(fd), Err: err}
		}
		if m == nil {
			m = map[string]string{}
		}
		m[name] = string(v)
	}
	return m, nil
}

// userXattrsAt is userXattrs of name in directory dirfd.
func userXattrsAt(dirfd int, name string) (map[string]string, error) {
	fd, err := pinAt(dirfd, name)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	return userXattrs(fd)
}

// metacopyAt returns the metacopy digest of regular file name in dirfd, ""
// when it holds its own data.
func metacopyAt(dirfd int, name string) (digest.Digest, error) {
	v, ok, err := readMarkAt(dirfd, name, markMetacopy)
	if err != nil || !ok {
		return "", err
	}
	d, err := digest.Parse(string(v))
	if err != nil {
		return "", fmt.Errorf("%s: metacopy %q: %w", name, v, layerstore.ErrCorrupt)
	}
	return d, nil
}

// MetacopyOf returns the digest of the object that holds the data of the
// upper dir's regular file at path, or "" when the file holds its own data.
// Readers of an upper dir read such a file with OpenUpperFile.
func MetacopyOf(path string) (digest.Digest, error) {
	return metacopyAt(unix.AT_FDCWD, path)
}

// OpenUpperFile opens the content of the upper dir's regular file at path as
// the mount shows it: for a metacopy, the object's bytes followed by what
// the upper file has beyond the object's end (appended since); else the
// upper file. It returns the content's size.
func OpenUpperFile(path string, objects func(digest.Digest) string) (io.ReadCloser, int64, error) {
	return openUpperFileAt(unix.AT_FDCWD, path, objects)
}

// openUpperFileAt is OpenUpperFile of name in directory dirfd.
func openUpperFileAt(dirfd int, name string, objects func(digest.Digest) string) (io.ReadCloser, int64, error) {
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: not a regular file: %w", name, layerstore.ErrInvalid)
	}
	v, ok, err := readMark(fd, markMetacopy)
	if err != nil || !ok {
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}
	d, err := digest.Parse(string(v))
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%s: metacopy %q: %w", name, v, layerstore.ErrCorrupt)
	}
	obj, err := openObject(objects(d))
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%s: metacopy object %s: %w", name, d, err)
	}
	ost, err := obj.Stat()
	if err == nil && ost.Size() > st.Size() {
		err = fmt.Errorf("%s: metacopy object %s is %d bytes, the file %d: %w", name, d, ost.Size(), st.Size(), layerstore.ErrCorrupt)
	}
	if err != nil {
		f.Close()
		obj.Close()
		return nil, 0, err
	}
	r := io.MultiReader(obj, io.NewSectionReader(f, ost.Size(), st.Size()-ost.Size()))
	return &multiCloser{Reader: r, closers: []io.Closer{obj, f}}, st.Size(), nil
}

type multiCloser struct {
	io.Reader
	closers []io.Closer
}

func (m *multiCloser) Close() error {
	var errs []error
	for _, c := range m.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
