package layerstore

import "errors"

// Sentinel errors. Functions wrap them with the name or digest at hand; test
// with errors.Is.
var (
	// ErrNotFound: no image, layer, tree or object by that name.
	ErrNotFound = errors.New("not found")
	// ErrExists: the thing to be created is already there.
	ErrExists = errors.New("already exists")
	// ErrAmbiguous: an image ID prefix names more than one image.
	ErrAmbiguous = errors.New("ambiguous")
	// ErrDigestMismatch: content does not hash to the digest that names it.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: content is not the size its descriptor declares.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrCorrupt: stored or offered data is malformed.
	ErrCorrupt = errors.New("corrupt")
	// ErrInvalid: input is not acceptable (bad path, bad reference, bad tar entry).
	ErrInvalid = errors.New("invalid")
	// ErrInUse: the image or layer is held by a live mount or by another image.
	ErrInUse = errors.New("in use")
	// ErrLocked: another strata process holds the store and did not let go in time.
	ErrLocked = errors.New("store is locked by another strata process")
)
