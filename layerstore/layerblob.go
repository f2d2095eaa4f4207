package layerstore

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// AddLayerBlob records that the registry blob d, of mediaType, holds the
// stored layer diffID: a pull verified it while ingesting, or a push made it
// by compressing the layer and hashing what it sent. A later push offers it
// to a registry before compressing the layer again, and an AddImage that
// names it may skip the layer.
func (s *Store) AddLayerBlob(diffID, d digest.Digest, mediaType string) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("blob digest %q: %w: %w", d, err, ErrInvalid)
	}
	return s.update(func(tx *bolt.Tx) error {
		lr, err := getLayerRecord(tx, diffID)
		if err != nil {
			return err
		}
		if !slices.Contains(lr.BlobDigests, d) {
			lr.BlobDigests = append(lr.BlobDigests, d)
		}
		if lr.MediaTypes == nil {
			lr.MediaTypes = map[digest.Digest]string{}
		}
		lr.MediaTypes[d] = mediaType
		meta, err := json.Marshal(lr)
		if err != nil {
			return err
		}
		return bucket(tx, bucketLayers).Bucket([]byte(diffID)).Put(keyMeta, meta)
	})
}
