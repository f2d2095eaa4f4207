package layerstore

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// ImageSource is an image in transit: its manifest and config, and its
// layers by descriptor, each with a way to open its blob. An archive reader
// (package imagefmt) or a registry client makes one for AddImage; the store
// makes one of a stored image (Store.ImageSource) for an export or a push.
type ImageSource struct {
	// Names are the references to point at the image ("name:tag"), taken
	// through ParseTag by AddImage. May be empty.
	Names []string
	// ManifestRaw is the image manifest byte for byte; optional for
	// AddImage, which verifies it against ManifestDigest when both are set.
	ManifestRaw    []byte
	ManifestDigest digest.Digest
	// Manifest is ManifestRaw parsed, for the caller's information;
	// AddImage does not read it.
	Manifest ocispec.Manifest
	// ConfigRaw is the image config byte for byte. Its digest is the image
	// ID; AddImage verifies it against ConfigDigest when that is set.
	ConfigRaw    []byte
	ConfigDigest digest.Digest
	// Config is ConfigRaw parsed, for the caller's information; AddImage
	// parses ConfigRaw itself.
	Config ocispec.Image
	// RepoDigests are the "name@sha256:…" references a registry knows the
	// image by (a pull sets them; an archive has none), recorded with it.
	RepoDigests []string
	// Layers, base first; len(Layers) == len(Config.RootFS.DiffIDs).
	Layers []LayerBlob
}

// LayerBlob is one layer of an ImageSource: its descriptor, its diffID and
// a way to open its blob.
type LayerBlob struct {
	Digest    digest.Digest // blob digest to verify; "" when unknown (a plain tarball)
	Size      int64         // declared blob size to verify; -1 when unknown
	MediaType string        // as the manifest names it; "" when unknown
	DiffID    digest.Digest // expected diffID; "" when unknown
	// Open returns the raw blob, neither decompressed nor verified: its
	// reader (the store) checks Digest, Size and DiffID while it streams.
	// It may be called concurrently and more than once.
	Open func() (io.ReadCloser, error)
}

// ImageSource is the stored image img as a source for an export or a push:
// its config verbatim (so its ID is kept), its layers as the uncompressed
// tars they were imported from (digest = diffID, read with LayerTar), and a
// manifest made anew for those layers. Names are img.RepoTags.
func (s *Store) ImageSource(img *Image) (*ImageSource, error) {
	src := &ImageSource{
		Names:        img.RepoTags,
		ConfigRaw:    img.ConfigRaw,
		ConfigDigest: img.ID,
		Config:       img.Config,
	}
	err := s.view(func(tx *bolt.Tx) error {
		for _, d := range img.Layers {
			lr, err := getLayerRecord(tx, d)
			if err != nil {
				return fmt.Errorf("image %s: %w", img.ID, err)
			}
			src.Layers = append(src.Layers, LayerBlob{
				Digest:    d,
				Size:      lr.TarSize,
				MediaType: ocispec.MediaTypeImageLayer,
				DiffID:    d,
				Open:      func() (io.ReadCloser, error) { return s.LayerTar(d) },
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	src.Manifest = ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: img.ID, Size: int64(len(img.ConfigRaw))},
	}
	for _, l := range src.Layers {
		src.Manifest.Layers = append(src.Manifest.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	if src.ManifestRaw, err = json.Marshal(src.Manifest); err != nil {
		return nil, err
	}
	src.ManifestDigest = digest.FromBytes(src.ManifestRaw)
	return src, nil
}
