package imagefmt

import "errors"

// Sentinel errors. Every error this package returns wraps one of them (or an
// I/O error from the file system) together with the path, member name or
// digest at hand; test with errors.Is.
var (
	// ErrUnknownFormat: the input is neither an OCI image layout, an
	// oci-archive nor a docker-archive (nor one of those compressed with gzip
	// or zstd).
	ErrUnknownFormat = errors.New("not an image archive")
	// ErrMissingBlob: a manifest, index or manifest.json names a blob or tar
	// member the archive does not hold.
	ErrMissingBlob = errors.New("missing blob")
	// ErrDigestMismatch: a manifest, index or config does not hash to the
	// digest, or is not the size, that its descriptor declares.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrInvalid: the archive is recognised but malformed: bad JSON, a bad
	// digest, an unsupported media type, a layer count that differs from the
	// config's diff_ids, a truncated tar, a member name that escapes the
	// archive, a bad image reference, ….
	ErrInvalid = errors.New("invalid")
)
