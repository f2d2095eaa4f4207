package layerstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// A layer is stored under layers/<diffID>/ (see schema.go): "meta" holds its
// layerRecord (JSON), "tarsplit" the bytes that rebuild its tar around the
// objects (tarsplit.go), and the bucket "e" one key per tar entry
// (Key(path) -> Entry.MarshalBinary), so a directory's children are one
// contiguous range. A layer is written once, in the transaction that commits
// the image naming it; only its record's BlobDigests grow later.

// layerRecord is the value of layers/<diffID>/meta.
type layerRecord struct {
	DiffID      digest.Digest   `json:"diffID"`
	BlobDigests []digest.Digest `json:"blobDigests,omitempty"` // compressed digests seen for it
	Compression string          `json:"compression"`           // of the first blob seen
	// MediaTypes of the BlobDigests a registry pull or push used, by
	// digest, so a push can offer a blob the registry may already have.
	MediaTypes map[digest.Digest]string `json:"mediaTypes,omitempty"`
	TarSize    int64                    `json:"tarSize"` // uncompressed tar bytes
	Size       int64                    `json:"size"`    // bytes of file contents and symlink targets, as docker counts
	Entries    int                      `json:"entries"`
	Created    time.Time                `json:"created"`
}

// putLayer stores a parsed layer and takes its object references. A layer
// stored meanwhile by another process is left as it is.
func putLayer(tx *bolt.Tx, ing *ingested) error {
	lb := bucket(tx, bucketLayers)
	if old := lb.Bucket([]byte(ing.rec.DiffID)); old != nil {
		// Stored meanwhile, or stored from another blob: remember this
		// blob as verified to hold the layer.
		lr, err := getLayerRecord(tx, ing.rec.DiffID)
		if err != nil {
			return err
		}
		for _, d := range ing.rec.BlobDigests {
			if !slices.Contains(lr.BlobDigests, d) {
				lr.BlobDigests = append(lr.BlobDigests, d)
			}
		}
		meta, err := json.Marshal(lr)
		if err != nil {
			return err
		}
		return old.Put(keyMeta, meta)
	}
	b, err := lb.CreateBucket([]byte(ing.rec.DiffID))
	if err != nil {
		return fmt.Errorf("layer %s: %w", ing.rec.DiffID, err)
	}
	meta, err := json.Marshal(ing.rec)
	if err != nil {
		return err
	}
	if err := b.Put(keyMeta, meta); err != nil {
		return err
	}
	if ing.tarSplit != nil {
		if err := b.Put(keyTarSplit, ing.tarSplit); err != nil {
			return err
		}
	}
	eb, err := b.CreateBucket(bucketEnts)
	if err != nil {
		return err
	}
	eb.FillPercent = 1 // keys arrive sorted
	for _, e := range ing.entries {
		v, _ := e.MarshalBinary()
		if err := eb.Put(Key(e.Path), v); err != nil {
			return fmt.Errorf("layer %s entry %q: %w", ing.rec.DiffID, e.Path, err)
		}
	}
	for d, size := range ing.objects {
		if _, err := refObject(tx, d, size, +1); err != nil {
			return err
		}
	}
	return nil
}

func getLayerRecord(tx *bolt.Tx, diffID digest.Digest) (layerRecord, error) {
	var lr layerRecord
	b := bucket(tx, bucketLayers).Bucket([]byte(diffID))
	if b == nil {
		return lr, fmt.Errorf("layer %s: %w", diffID, ErrNotFound)
	}
	if err := json.Unmarshal(b.Get(keyMeta), &lr); err != nil {
		return lr, fmt.Errorf("layer %s: %w: %w", diffID, err, ErrCorrupt)
	}
	return lr, nil
}

// layerEntries reads a layer's entries in key order.
func layerEntries(tx *bolt.Tx, diffID digest.Digest) ([]*Entry, error) {
	lb := bucket(tx, bucketLayers).Bucket([]byte(diffID))
	if lb == nil || lb.Bucket(bucketEnts) == nil {
		return nil, fmt.Errorf("layer %s: %w", diffID, ErrNotFound)
	}
	var out []*Entry
	err := lb.Bucket(bucketEnts).ForEach(func(k, v []byte) error {
		e := &Entry{Path: PathOfKey(k)}
		if err := e.UnmarshalBinary(v); err != nil {
			return fmt.Errorf("layer %s entry %q: %w", diffID, e.Path, err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// layerObjects is the set of objects a layer holds, with their sizes: those
// its entries name and those its tar split needs (a file that a later entry
// of the same tar replaced is in the tar split only). This one definition
// serves ingest, removal, disk usage and Check.
func layerObjects(tx *bolt.Tx, diffID digest.Digest) (map[digest.Digest]int64, error) {
	entries, err := layerEntries(tx, diffID)
	if err != nil {
		return nil, err
	}
	objs := map[digest.Digest]int64{}
	for _, e := range entries {
		if e.Type == TypeReg && e.Digest != "" {
			objs[e.Digest] = e.Size
		}
	}
	segs, err := decodeTarSplit(bucket(tx, bucketLayers).Bucket([]byte(diffID)).Get(keyTarSplit))
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", diffID, err)
	}
	for _, sg := range segs {
		switch sg.kind {
		case segContent:
			objs[sg.object] = sg.n
		case segRange:
			objs[sg.object] = sg.size
		}
	}
	return objs, nil
}

// LayerInfo describes a stored layer.
type LayerInfo struct {
	DiffID      digest.Digest
	BlobDigests []digest.Digest
	MediaTypes  map[digest.Digest]string // of the registry blobs among BlobDigests
	Compression string
	TarSize     int64
	Size        int64
	Entries     int
}

// Layer returns what the store knows of a layer.
func (s *Store) Layer(diffID digest.Digest) (LayerInfo, error) {
	var li LayerInfo
	err := s.view(func(tx *bolt.Tx) error {
		lr, err := getLayerRecord(tx, diffID)
		li = LayerInfo{DiffID: lr.DiffID, BlobDigests: lr.BlobDigests, MediaTypes: lr.MediaTypes, Compression: lr.Compression, TarSize: lr.TarSize, Size: lr.Size, Entries: lr.Entries}
		return err
	})
	return li, err
}

// LayerEntries returns a stored layer's entries in key order.
func (s *Store) LayerEntries(diffID digest.Digest) ([]*Entry, error) {
	var out []*Entry
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = layerEntries(tx, diffID)
		return err
	})
	return out, err
}
