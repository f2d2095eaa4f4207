package imagefmt

import (
	_ "crypto/sha256" // digest algorithms go-digest leaves to its users
	_ "crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
)

// maxJSONSize bounds index.json, manifest.json, manifests and configs.
const maxJSONSize = 32 << 20

// readMember reads a whole JSON member of at most maxJSONSize bytes.
func readMember(src source, name string) ([]byte, error) {
	rc, size, err := src.open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, layerstore.ErrMissingBlob)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > maxJSONSize {
		return nil, fmt.Errorf("%w %s: %d bytes, more than the %d a JSON document may have", layerstore.ErrInvalid, name, size, maxJSONSize)
	}
	raw, err := io.ReadAll(io.LimitReader(rc, size))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return raw, nil
}

// blobPath is where an OCI layout keeps the blob d. d must be valid.
func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// validDigest checks a digest read from a manifest or index before it is
// hashed with or turned into a path.
func validDigest(d digest.Digest, what string) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w %s digest %q: %w", layerstore.ErrInvalid, what, d, err)
	}
	return nil
}

// readBlob reads the blob desc names from an OCI layout and verifies its size
// and digest. what says which blob it is ("manifest", "config", …).
func readBlob(src source, desc ocispec.Descriptor, what string) ([]byte, error) {
	if err := validDigest(desc.Digest, what); err != nil {
		return nil, err
	}
	if desc.Size < 0 || desc.Size > maxJSONSize {
		return nil, fmt.Errorf("%w %s %s: size %d is not in [0, %d]", layerstore.ErrInvalid, what, desc.Digest, desc.Size, maxJSONSize)
	}
	rc, _, err := src.open(blobPath(desc.Digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s %s: %w", what, desc.Digest, layerstore.ErrMissingBlob)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, desc.Digest, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, desc.Digest, err)
	}
	if err := verify(raw, desc, what); err != nil {
		return nil, err
	}
	return raw, nil
}

// verify checks raw against the size and digest desc declares.
func verify(raw []byte, desc ocispec.Descriptor, what string) error {
	switch n := int64(len(raw)); {
	case n < desc.Size:
		return fmt.Errorf("%s %s: %w: %d bytes, descriptor says %d", what, desc.Digest, layerstore.ErrDigestMismatch, n, desc.Size)
	case n > desc.Size:
		return fmt.Errorf("%s %s: %w: more than the %d bytes the descriptor says", what, desc.Digest, layerstore.ErrDigestMismatch, desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(raw); got != desc.Digest {
		return fmt.Errorf("%s %s: %w: content hashes to %s", what, desc.Digest, layerstore.ErrDigestMismatch, got)
	}
	return nil
}

// openBlob returns the LayerBlob.Open function for member name of src.
func openBlob(src source, name string, d digest.Digest) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		rc, _, err := src.open(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("layer %s (%s): %w", d, name, layerstore.ErrMissingBlob)
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", d, err)
		}
		return rc, nil
	}
}

// parseConfig parses an image config and checks it describes as many layers
// as the manifest lists.
func parseConfig(raw []byte, d digest.Digest, nlayers int) (ocispec.Image, error) {
	var c ocispec.Image
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("%w config %s: %w", layerstore.ErrInvalid, d, err)
	}
	if c.RootFS.Type != "layers" {
		return c, fmt.Errorf("%w config %s: rootfs.type is %q, want \"layers\"", layerstore.ErrInvalid, d, c.RootFS.Type)
	}
	if len(c.RootFS.DiffIDs) != nlayers {
		return c, fmt.Errorf("%w config %s: the manifest lists %d layers but rootfs.diff_ids has %d",
			layerstore.ErrInvalid, d, nlayers, len(c.RootFS.DiffIDs))
	}
	for i, id := range c.RootFS.DiffIDs {
		if err := validDigest(id, fmt.Sprintf("config %s diff_ids[%d]", d, i)); err != nil {
			return c, err
		}
	}
	return c, nil
}
