package fs

import (
	"errors"
	iofs "io/fs"
	"syscall"

	"github.com/strata-dev/strata/layerstore"
)

// toErrno is the one place where Go errors become the errno a FUSE request
// answers with. Errnos pass through; the store's sentinel errors map to what
// a file system would say (a missing or corrupt object is an I/O error, not a
// missing file); anything unknown is EIO.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, iofs.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, iofs.ErrPermission):
		return syscall.EPERM
	case errors.Is(err, layerstore.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, layerstore.ErrInUse):
		return syscall.EBUSY
	case errors.Is(err, layerstore.ErrNotFound),
		errors.Is(err, layerstore.ErrCorrupt),
		errors.Is(err, layerstore.ErrDigestMismatch),
		errors.Is(err, layerstore.ErrSizeMismatch):
		return syscall.EIO
	}
	return syscall.EIO
}
