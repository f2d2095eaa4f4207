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
	Base   *Image                         // nil: start from scratch
	Layers []NewLayer                     // applied in order on the base
	Edit   func(cfg *ocispec.Image) error // edits the config after the layers are added
	Names  []string                       // references to point at the result, taken through ParseTag
	// ConfigExtra sets keys of the config's "config" object that
	// ocispec.ImageConfig has no field for (docker's Healthcheck, OnBuild,
	// Shell); a nil value deletes the key. The base's such keys are kept.
	ConfigExtra map[string]any
	// CacheKey, when set, records the new image in the build cache under
	// this key, in the transaction that stores it (see CachePut).
	CacheKey string
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
	if raw, err = keepExtra(raw, opt.Base, opt.ConfigExtra); err != nil {
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
	if len(names) > 0 {
		rec.LastTagTime = now // as docker import and commit with a name
	}
	// Layers already stored come back nil from ingestLayers; keep only new ones.
	var fresh []*ingested
	for _, ing := range ings {
		if ing != nil {
			fresh = append(fresh, ing)
		}
	}
	err = s.update(func(tx *bolt.Tx) error {
		if err := s.commitImage(tx, st, rec, fresh, names); err != nil {
			return err
		}
		if opt.CacheKey != "" {
			return putCache(tx, opt.CacheKey, id)
		}
		return nil
	})
	if err != nil {
		return Image{}, err
	}
	return s.ResolveImage(string(id))
}

// keepExtra lays over raw's "config" object the keys of the base's that
// ocispec does not know (lost by the round trip through ocispec.Image), then
// extra's.
func keepExtra(raw []byte, base *Image, extra map[string]any) ([]byte, error) {
	merged := map[string]json.RawMessage{}
	if base != nil {
		var b struct {
			Config map[string]json.RawMessage `json:"config"`
		}
		if json.Unmarshal(base.ConfigRaw, &b) == nil {
			for k, v := range b.Config {
				if !ociConfigKeys[k] {
					merged[k] = v
				}
			}
		}
	}
	for k, v := range extra {
		if v == nil {
			delete(merged, k)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		merged[k] = b
	}
	if len(merged) == 0 {
		return raw, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, err
	}
	c := map[string]json.RawMessage{}
	if v, ok := top["config"]; ok {
		if err := json.Unmarshal(v, &c); err != nil {
			return nil, err
		}
	}
	for k, v := range merged {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	top["config"] = b
	return json.Marshal(top)
}

// ociConfigKeys are the keys ocispec.ImageConfig marshals.
var ociConfigKeys = map[string]bool{
	"User": true, "ExposedPorts": true, "Env": true, "Entrypoint": true, "Cmd": true,
	"Volumes": true, "WorkingDir": true, "Labels": true, "StopSignal": true, "ArgsEscaped": true,
}
