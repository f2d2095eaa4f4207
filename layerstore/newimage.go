package layerstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// NewLayer is a layer made here (a rootfs tarball, a committed top layer, a
// build step): a tar stream, compressed or not, and its history entry.
type NewLayer struct {
	Open    func() (io.ReadCloser, error) // nil for a history-only step (empty_layer)
	History ocispec.History
}

// NewImageOptions describe an image made from a base and new layers.
type NewImageOptions struct {
	Base     *Image                         // nil: start from scratch
	Layers   []NewLayer                     // applied in order on the base
	Edit     func(cfg *ocispec.Image) error // edits the config after the layers are added
	Names    []string                       // references to point at the result, taken through ParseTag
	Progress func(Progress)
}

// NewImage stores a new image: the base's layers plus new ones, with a config
// derived from the base's, and an OCI manifest naming the layers uncompressed
// (digest = diffID). Like AddImage, all or nothing.
func (s *Store) NewImage(ctx context.Context, opt NewImageOptions) (Image, error) {
	names, err := parseTags(opt.Names)
	if err != nil {
		return Image{}, err
	}
	var cfg ocispec.Image
	if opt.Base != nil {
		if err := json.Unmarshal(opt.Base.ConfigRaw, &cfg); err != nil {
			return Image{}, fmt.Errorf("base config: %w: %w", err, ErrCorrupt)
		}
	} else {
		cfg.Platform = ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
		cfg.RootFS.Type = "layers"
	}
	now := time.Now().UTC()
	cfg.Created = &now
	var blobs []LayerBlob
	for _, l := range opt.Layers {
		if l.Open != nil {
			blobs = append(blobs, LayerBlob{Size: -1, Open: l.Open})
		}
	}
	lk, err := s.lock(false)
	if err != nil {
		return Image{}, err
	}
	defer lk.unlock()
	ings, st, err := s.ingestLayers(ctx, blobs, opt.Progress)
	if st != nil {
		defer st.discard()
	}
	if err != nil {
		return Image{}, err
	}
	var layerDescs []ocispec.Descriptor
	if opt.Base != nil && opt.Base.ManifestRaw != nil {
		var m ocispec.Manifest
		if json.Unmarshal(opt.Base.ManifestRaw, &m) == nil && len(m.Layers) == len(opt.Base.Layers) {
			layerDescs = m.Layers
		}
	}
	if layerDescs == nil && opt.Base != nil {
		for i, d := range opt.Base.Layers {
			layerDescs = append(layerDescs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: opt.Base.LayerSizes[i]})
		}
	}
	i := 0
	for _, l := range opt.Layers {
		h := l.History
		if h.Created == nil {
			h.Created = &now
		}
		if l.Open == nil {
			h.EmptyLayer = true
		} else {
			ing := ings[i]
			i++
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, ing.rec.DiffID)
			layerDescs = append(layerDescs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: ing.rec.DiffID, Size: ing.rec.TarSize})
		}
		cfg.History = append(cfg.History, h)
	}
	if opt.Edit != nil {
		if err := opt.Edit(&cfg); err != nil {
			return Image{}, err
		}
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return Image{}, err
	}
	id := digest.FromBytes(raw)
	man := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: id, Size: int64(len(raw))},
		Layers:    layerDescs,
	}
	manRaw, err := json.Marshal(man)
	if err != nil {
		return Image{}, err
	}
	rec := imageRecord{ID: id, Config: raw, Manifest: manRaw, ManifestDigest: digest.FromBytes(manRaw), Layers: cfg.RootFS.DiffIDs, Loaded: now}
	if len(rec.Layers) > 0 {
		rec.ChainID = identity.ChainID(rec.Layers)
	}
	// Layers already stored come back nil from ingestLayers; keep only new ones.
	var fresh []*ingested
	for _, ing := range ings {
		if ing != nil {
			fresh = append(fresh, ing)
		}
	}
	if err := s.update(func(tx *bolt.Tx) error { return s.commitImage(tx, rec, fresh, names) }); err != nil {
		return Image{}, err
	}
	return s.ResolveImage(string(id))
}
