package imagefmt

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/strata-dev/strata/layerstore"
)

// source holds the members of an archive, by clean slash-separated name
// relative to the archive's root: a directory (an OCI layout or an extracted
// docker save) or an indexed tar file. Its methods are safe for concurrent use.
type source interface {
	// open returns member name's bytes and size. A member that is not there
	// yields an error wrapping fs.ErrNotExist.
	open(name string) (io.ReadCloser, int64, error)
	// has reports whether member name is there as a regular file.
	has(name string) bool
	close() error
}

// dirSource is a directory, opened through os.Root so that no member name
// and no symlink inside the directory can reach a file outside it.
type dirSource struct {
	root *os.Root
}

var _ source = (*dirSource)(nil)

func openDirSource(dir string) (*dirSource, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &dirSource{root: root}, nil
}

func (d *dirSource) open(name string) (io.ReadCloser, int64, error) {
	f, err := d.root.Open(filepath.FromSlash(name))
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, errors.Join(err, f.Close())
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("not a regular file: %w", fs.ErrNotExist)}
	}
	return f, fi.Size(), nil
}

func (d *dirSource) has(name string) bool {
	fi, err := d.root.Stat(filepath.FromSlash(name))
	return err == nil && fi.Mode().IsRegular()
}

func (d *dirSource) close() error { return d.root.Close() }

// cleanMember cleans a member name as a tar or manifest.json gives it
// ("./blobs/sha256/ab" -> "blobs/sha256/ab") and rejects one that is
// absolute or climbs out of the archive. The root itself cleans to ".".
func cleanMember(name string) (string, error) {
	n := path.Clean(strings.TrimPrefix(name, "./"))
	if path.IsAbs(n) || n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("%w member name %q: escapes the archive", layerstore.ErrInvalid, name)
	}
	return n, nil
}
