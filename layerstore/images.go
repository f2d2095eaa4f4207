package layerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// Image is a stored image.
type Image struct {
	ID             digest.Digest // digest of the config, as docker shows it
	Config         ocispec.Image // parsed from ConfigRaw
	ConfigRaw      []byte        // verbatim, so the ID stays true
	ManifestDigest digest.Digest
	ManifestRaw    []byte
	RepoTags       []string        // "name:tag", sorted
	RepoDigests    []string        // "name@sha256:…" of the registry manifests it was pulled or pushed as, sorted
	Layers         []digest.Digest // diffIDs, base first
	LayerSizes     []int64         // content bytes per layer, same order
	ChainID        digest.Digest   // of all layers; "" for an image without layers
	Size           int64           // sum of LayerSizes
	Loaded         time.Time       // when it entered this store
	LastTagTime    time.Time       // when Tag last named it; zero if never (load and import do not count, as in docker)
}

// Created is the image's creation time from its config, or when it was loaded.
func (img *Image) Created() time.Time {
	if img.Config.Created != nil {
		return *img.Config.Created
	}
	return img.Loaded
}

// imageRecord is the value of images/<ID>.
type imageRecord struct {
	ID             digest.Digest   `json:"id"`
	Config         []byte          `json:"config"` // base64: json.RawMessage would be re-compacted
	ManifestDigest digest.Digest   `json:"manifestDigest,omitempty"`
	Manifest       []byte          `json:"manifest,omitempty"`
	RepoDigests    []string        `json:"repoDigests,omitempty"` // only from a registry, as in docker
	Layers         []digest.Digest `json:"layers"`
	ChainID        digest.Digest   `json:"chainID,omitempty"`
	Loaded         time.Time       `json:"loaded"`
	LastTagTime    time.Time       `json:"lastTagTime,omitzero"`
}

// Progress reports ingest of one layer.
type Progress struct {
	Layer  int           // index in the image
	Digest digest.Digest // blob digest, or diffID
	Done   int64         // blob bytes read so far
	// Extracted is how far into the blob the bytes the store has taken
	// in (parsed, hashed, handed to the object writers) came from: a
	// layer streams, so it follows Done a few hundred KiB behind.
	Extracted int64
	Total     int64 // blob size, -1 if unknown
	Skipped   bool  // already stored
	Finished  bool
}

// AddOptions tune AddImage.
type AddOptions struct {
	Progress func(Progress) // called from ingest goroutines, serialized
}

// AddImage verifies and stores an image: its layers (those not yet stored),
// its config and manifest, and its names. Nothing of it is visible unless all
// of it is stored.
func (s *Store) AddImage(ctx context.Context, src *ImageSource, opt *AddOptions) (Image, error) {
	if opt == nil {
		opt = &AddOptions{}
	}
	names, err := parseTags(src.Names)
	if err != nil {
		return Image{}, err
	}
	id := digest.FromBytes(src.ConfigRaw)
	if src.ConfigDigest != "" && src.ConfigDigest != id {
		return Image{}, fmt.Errorf("config %s: content hashes to %s: %w", src.ConfigDigest, id, ErrDigestMismatch)
	}
	if src.ManifestRaw != nil && src.ManifestDigest != "" && digest.FromBytes(src.ManifestRaw) != src.ManifestDigest {
		return Image{}, fmt.Errorf("manifest %s: %w", src.ManifestDigest, ErrDigestMismatch)
	}
	cfg, err := parseConfig(src.ConfigRaw)
	if err != nil {
		return Image{}, fmt.Errorf("config %s: %w", id, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(src.Layers) {
		return Image{}, fmt.Errorf("config %s names %d layers, the manifest %d: %w", id, len(cfg.RootFS.DiffIDs), len(src.Layers), ErrInvalid)
	}
	blobs := make([]LayerBlob, len(src.Layers))
	for i, l := range src.Layers {
		if l.DiffID == "" {
			l.DiffID = cfg.RootFS.DiffIDs[i]
		}
		if l.DiffID != cfg.RootFS.DiffIDs[i] {
			return Image{}, fmt.Errorf("layer %d: diffID %s, config says %s: %w", i, l.DiffID, cfg.RootFS.DiffIDs[i], ErrDigestMismatch)
		}
		blobs[i] = l
	}
	lk, err := s.lock(false)
	if err != nil {
		return Image{}, err
	}
	defer lk.unlock()
	layers, st, err := s.ingestLayers(ctx, blobs, opt.Progress)
	if st != nil {
		defer st.discard()
	}
	if err != nil {
		return Image{}, err
	}
	rec := imageRecord{ID: id, Config: src.ConfigRaw, Layers: cfg.RootFS.DiffIDs, Loaded: time.Now().UTC()}
	if src.ManifestRaw != nil {
		rec.Manifest = src.ManifestRaw
		rec.ManifestDigest = digest.FromBytes(src.ManifestRaw)
	}
	if len(rec.Layers) > 0 {
		rec.ChainID = identity.ChainID(rec.Layers)
	}
	repoDigests, err := parseRepoDigests(src.RepoDigests)
	if err != nil {
		return Image{}, err
	}
	rec.RepoDigests = repoDigests
	if err := s.update(func(tx *bolt.Tx) error {
		if err := s.commitImage(tx, st, rec, layers, names); err != nil {
			return err
		}
		return addRepoDigests(tx, rec.ID, repoDigests)
	}); err != nil {
		return Image{}, err
	}
	return s.ResolveImage(string(id))
}

func parseConfig(raw []byte) (ocispec.Image, error) {
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return cfg, fmt.Errorf("parse config: %w: %w", err, ErrInvalid)
	}
	if cfg.RootFS.Type != "layers" {
		return cfg, fmt.Errorf("rootfs type %q, want \"layers\": %w", cfg.RootFS.Type, ErrInvalid)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return cfg, fmt.Errorf("diff_id %q: %w: %w", d, err, ErrInvalid)
		}
	}
	return cfg, nil
}

// ingestLayers parses and stages every blob whose diffID is not stored yet,
// Options.Workers at a time, and publishes the staged objects. Entries of
// the result are nil for layers already stored.
func (s *Store) ingestLayers(ctx context.Context, blobs []LayerBlob, progress func(Progress)) ([]*ingested, *staging, error) {
	need := make([]bool, len(blobs))
	err := s.view(func(tx *bolt.Tx) error {
		for i, b := range blobs {
			// A stored layer is skipped only for a blob already verified
			// to hold it; any other blob is read and checked, even if its
			// objects are all there.
			need[i] = true
			if b.DiffID == "" {
				continue
			}
			lr, err := getLayerRecord(tx, b.DiffID)
			if err == nil && (b.Digest == "" || slices.Contains(lr.BlobDigests, b.Digest)) {
				need[i] = false
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	st, err := s.newStaging()
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		pmu    sync.Mutex
		report = func(p Progress) {
			if progress != nil {
				pmu.Lock()
				progress(p)
				pmu.Unlock()
			}
		}
		out  = make([]*ingested, len(blobs))
		errs = make([]error, len(blobs))
		wg   sync.WaitGroup
		sem  = make(chan struct{}, s.opts.Workers)
	)
	for i, b := range blobs {
		name := b.Digest
		if name == "" {
			name = b.DiffID
		}
		if !need[i] {
			report(Progress{Layer: i, Digest: name, Total: b.Size, Skipped: true, Finished: true})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			var done, extracted atomic.Int64
			ing, err := s.parseLayer(ctx, b, st, func(n int64) {
				report(Progress{Layer: i, Digest: name, Done: done.Add(n), Extracted: extracted.Load(), Total: b.Size})
			}, func(pos int64) {
				extracted.Store(pos)
				report(Progress{Layer: i, Digest: name, Done: done.Load(), Extracted: pos, Total: b.Size})
			}, maxTrailer)
			if err == nil {
				err = st.resolve() // what it shares with the store, looked up as it ends
			}
			if err != nil {
				errs[i] = &LayerError{Index: i, Blob: b.Digest, Err: err}
				cancel()
				return
			}
			report(Progress{Layer: i, Digest: name, Done: done.Load(), Extracted: done.Load(), Total: b.Size, Finished: true})
			out[i] = ing
		}()
	}
	wg.Wait()
	// Report the first real failure, not the cancellations it caused.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, st, err
		}
	}
	for _, err := range errs {
		if err != nil {
			return nil, st, err
		}
	}
	if err := st.publish(); err != nil {
		return nil, st, err
	}
	return out, st, nil
}

// commitImage stores new layers (their objects staged and published by st),
// the image record, its tree and its names.
func (s *Store) commitImage(tx *bolt.Tx, st *staging, rec imageRecord, layers []*ingested, names []string) error {
	// Each object of the new layers is one st published (renamed into
	// objects/ and flushed before this transaction) or one whose record
	// was there when st looked it up, and so its file: a record and its file go
	// only under the exclusive lock, which the caller's shared lock keeps
	// away. So the record, looked up before putLayer takes its references,
	// is all there is to check; a stat of each file (5,000 for Debian)
	// would tell nothing more.
	ob := bucket(tx, bucketObjects)
	for _, ing := range layers {
		if ing == nil {
			continue
		}
		for d := range ing.objects {
			if !st.published(d) && ob.Get([]byte(d)) == nil {
				return fmt.Errorf("object %s vanished during import: %w", d, ErrCorrupt)
			}
		}
	}
	for _, ing := range layers {
		if ing != nil {
			if err := putLayer(tx, ing); err != nil {
				return err
			}
		}
	}
	lb := bucket(tx, bucketLayers)
	for _, d := range rec.Layers {
		if lb.Bucket([]byte(d)) == nil {
			return fmt.Errorf("layer %s: %w", d, ErrNotFound)
		}
	}
	ib := bucket(tx, bucketImages)
	if ib.Get([]byte(rec.ID)) == nil {
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := ib.Put([]byte(rec.ID), v); err != nil {
			return err
		}
		if err := hold(tx, imageHolder(rec.ID), rec.Layers, rec.ChainID, false); err != nil {
			return err
		}
	} else if !rec.LastTagTime.IsZero() {
		if err := touchTagTime(tx, rec.ID, rec.LastTagTime); err != nil {
			return err
		}
	}
	if rec.ChainID != "" {
		if _, err := s.ensureTree(tx, rec.Layers); err != nil {
			return err
		}
	}
	for _, n := range names {
		if err := setRef(tx, n, rec.ID); err != nil {
			return err
		}
	}
	return nil
}

// imageCore is what a mount needs of an image record: json skips the rest
// (the config and manifest) without decoding it.
type imageCore struct {
	ID      digest.Digest   `json:"id"`
	Layers  []digest.Digest `json:"layers"`
	ChainID digest.Digest   `json:"chainID,omitempty"`
}

func getImageCore(tx *bolt.Tx, id digest.Digest) (imageCore, error) {
	v := bucket(tx, bucketImages).Get([]byte(id))
	if v == nil {
		return imageCore{}, fmt.Errorf("image %s: %w", id, ErrNotFound)
	}
	var c imageCore
	if err := json.Unmarshal(v, &c); err != nil {
		return c, fmt.Errorf("image %s: %w: %w", id, err, ErrCorrupt)
	}
	return c, nil
}

// getImage reads one image record and fills the derived fields; sizes,
// if not nil, keeps the layer sizes read, for a caller reading many.
func getImage(tx *bolt.Tx, id digest.Digest, tags map[digest.Digest][]string, sizes map[digest.Digest]int64) (Image, error) {
	v := bucket(tx, bucketImages).Get([]byte(id))
	if v == nil {
		return Image{}, fmt.Errorf("image %s: %w", id, ErrNotFound)
	}
	var rec imageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return Image{}, fmt.Errorf("image %s: %w: %w", id, err, ErrCorrupt)
	}
	img := Image{
		ID:             rec.ID,
		ConfigRaw:      rec.Config,
		ManifestDigest: rec.ManifestDigest,
		ManifestRaw:    rec.Manifest,
		Layers:         rec.Layers,
		ChainID:        rec.ChainID,
		Loaded:         rec.Loaded,
		LastTagTime:    rec.LastTagTime,
	}
	if err := json.Unmarshal(rec.Config, &img.Config); err != nil {
		return Image{}, fmt.Errorf("image %s config: %w: %w", id, err, ErrCorrupt)
	}
	for _, d := range rec.Layers {
		size, ok := sizes[d]
		if !ok {
			lr, err := getLayerRecord(tx, d)
			if err != nil {
				return Image{}, fmt.Errorf("image %s: %w", id, err)
			}
			size = lr.Size
			if sizes != nil {
				sizes[d] = size
			}
		}
		img.LayerSizes = append(img.LayerSizes, size)
		img.Size += size
	}
	img.RepoTags = tags[id]
	sort.Strings(img.RepoTags)
	img.RepoDigests = slices.Clone(rec.RepoDigests)
	return img, nil
}

// Images lists every image, newest first.
func (s *Store) Images() ([]Image, error) {
	var out []Image
	err := s.view(func(tx *bolt.Tx) error {
		tags, sizes := allTags(tx), map[digest.Digest]int64{}
		return bucket(tx, bucketImages).ForEach(func(k, _ []byte) error {
			img, err := getImage(tx, digest.Digest(k), tags, sizes)
			if err != nil {
				return err
			}
			out = append(out, img)
			return nil
		})
	})
	sortImages(out)
	return out, err
}

// sortImages sorts images newest first, in ID order where they were
// created at the same time.
func sortImages(imgs []Image) {
	sort.SliceStable(imgs, func(i, j int) bool { return imgs[i].Created().After(imgs[j].Created()) })
}

// ResolveImage finds an image by "name[:tag]", full ID ("sha256:…"), or a
// unique ID prefix (at least 4 hex digits, with or without "sha256:").
func (s *Store) ResolveImage(ref string) (Image, error) {
	var img Image
	err := s.view(func(tx *bolt.Tx) error {
		id, err := resolve(tx, ref)
		if err != nil {
			return err
		}
		img, err = getImage(tx, id, map[digest.Digest][]string{id: tagsOf(tx, id)}, nil)
		return err
	})
	return img, err
}
