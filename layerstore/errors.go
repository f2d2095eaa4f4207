package layerstore

import (
	"errors"

	"github.com/opencontainers/go-digest"
)

// Sentinel errors of the store and of its formats (packages imagefmt and
// export return these same values). Functions wrap them with the name, path
// or digest at hand; test with errors.Is. Package fs maps them to errnos.
var (
	// ErrNotFound: no image, layer, tree, object or mount by that name.
	ErrNotFound = errors.New("not found")
	// ErrExists: the thing to be created is already there.
	ErrExists = errors.New("already exists")
	// ErrAmbiguous: an image ID prefix or mount ID prefix names more than one.
	ErrAmbiguous = errors.New("ambiguous")
	// ErrDigestMismatch: content does not hash to the digest that names it
	// (a layer, a config, a manifest), or an archive's manifest or config is
	// not the size its descriptor declares.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: a layer blob or an object is not the size its
	// descriptor or record declares.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrCorrupt: stored data is malformed (a record that does not parse, an
	// object that vanished).
	ErrCorrupt = errors.New("corrupt")
	// ErrInvalid: input is not acceptable: a bad reference, path, tar entry,
	// config or manifest, an archive member that escapes the archive, an
	// unsupported media type or export format.
	ErrInvalid = errors.New("invalid")
	// ErrOverLimit: input is beyond a limit the store was opened with
	// (Options.MaxFileSize), not wrong in itself: the store opened with a
	// higher limit takes it. Always together with ErrInvalid.
	ErrOverLimit = errors.New("over the store's limit")
	// ErrUnknownFormat: an input offered as an image archive is neither an
	// OCI image layout, an oci-archive nor a docker-archive (nor one of those
	// compressed with gzip or zstd).
	ErrUnknownFormat = errors.New("not an image archive")
	// ErrMissingBlob: a manifest, index or manifest.json names a blob or tar
	// member the archive does not hold.
	ErrMissingBlob = errors.New("missing blob")
	// ErrInUse: the image or layer is held by a live mount or by another image.
	ErrInUse = errors.New("in use")
	// ErrLocked: another strata process holds the store and did not let go in time.
	ErrLocked = errors.New("store is locked by another strata process")
)

// LayerError is AddImage's error for one layer of the image: which (Index
// in its layers, Blob the blob's digest, "" for an uncompressed tarball
// given by diffID) and why (Err, to test with errors.Is). Its message is
// Err's, which names the layer.
type LayerError struct {
	Index int
	Blob  digest.Digest
	Err   error
}

func (e *LayerError) Error() string { return e.Err.Error() }
func (e *LayerError) Unwrap() error { return e.Err }
