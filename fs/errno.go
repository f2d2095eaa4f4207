package fs

import (
	"errors"
	iofs "io/fs"
	"syscall"

	"github.com/strata-dev/strata/layerstore"
)

// storeErrnos says what a file system answers for each of the store's
// sentinel errors, every one of them (a test holds the list to
// layerstore's). What the store cannot read is an I/O error: a missing or
// corrupt object is EIO, not a missing file.
var storeErrnos = []struct {
	err   error
	errno syscall.Errno
}{
	{layerstore.ErrOverLimit, syscall.EFBIG}, // before ErrInvalid, which it comes with
	{layerstore.ErrInvalid, syscall.EINVAL},
	{layerstore.ErrAmbiguous, syscall.EINVAL},
	{layerstore.ErrExists, syscall.EEXIST},
	{layerstore.ErrInUse, syscall.EBUSY},
	{layerstore.ErrLocked, syscall.EBUSY},
	{layerstore.ErrNotFound, syscall.EIO},
	{layerstore.ErrCorrupt, syscall.EIO},
	{layerstore.ErrDigestMismatch, syscall.EIO},
	{layerstore.ErrSizeMismatch, syscall.EIO},
	{layerstore.ErrUnknownFormat, syscall.EINVAL},
	{layerstore.ErrMissingBlob, syscall.EIO},
	{layerstore.ErrDownloadBusy, syscall.EBUSY},
}

// toErrno is the one place where Go errors become the errno a FUSE request
// answers with. Errnos pass through; the store's sentinel errors map as
// storeErrnos says; anything unknown is EIO.
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
	}
	for _, m := range storeErrnos {
		if errors.Is(err, m.err) {
			return m.errno
		}
	}
	return syscall.EIO
}
