package layerstore

import (
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// ImageUsage is one image's share of the store.
type ImageUsage struct {
	ID         digest.Digest
	RepoTags   []string
	Size       int64 // content bytes of its layers
	SharedSize int64 // bytes of objects another image also holds
	UniqueSize int64 // bytes of objects only this image holds
	Mounts     int   // live mounts of it
}

// DiskUsage is the store's accounting: logical bytes (what the layers hold,
// summed over images) against stored bytes (each object once).
type DiskUsage struct {
	Images        []ImageUsage
	Layers        int
	LayersSize    int64 // content bytes summed over layers (a file in two layers counts twice)
	ImagesSize    int64 // content bytes summed over images (a layer in two images counts twice)
	Objects       int
	ObjectsSize   int64 // logical bytes of distinct objects
	ObjectsOnDisk int64 // bytes the object files take on disk (sparse files count their data)
	Mounts        int
	MountsSize    int64 // bytes in top layers of mounts
	Reclaimable   int64 // bytes of objects that only images without a live mount hold
}

// DiskUsage computes the store's accounting.
func (s *Store) DiskUsage() (*DiskUsage, error) {
	du := &DiskUsage{}
	err := s.view(func(tx *bolt.Tx) error {
		tags := allTags(tx)
		mounts, err := mountsTx(tx)
		if err != nil {
			return err
		}
		mounted := map[digest.Digest]int{}
		for _, m := range mounts {
			if m.Alive() {
				mounted[m.Image]++
			}
			du.Mounts++
			du.MountsSize += duTree(s.MountDir(m.ID))
		}
		layerObjs := map[digest.Digest]map[digest.Digest]int64{}
		objsOf := func(d digest.Digest) (map[digest.Digest]int64, error) {
			if o, ok := layerObjs[d]; ok {
				return o, nil
			}
			o, err := layerObjects(tx, d)
			layerObjs[d] = o
			return o, err
		}
		err = bucket(tx, bucketLayers).ForEach(func(k, _ []byte) error {
			du.Layers++
			lr, err := getLayerRecord(tx, digest.Digest(k))
			du.LayersSize += lr.Size
			return err
		})
		if err != nil {
			return err
		}
		holders := map[digest.Digest]int{} // object -> images holding it
		imgObjs := map[digest.Digest]map[digest.Digest]int64{}
		var ids []digest.Digest
		err = bucket(tx, bucketImages).ForEach(func(k, v []byte) error {
			var rec imageRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("image %s: %w: %w", k, err, ErrCorrupt)
			}
			all := map[digest.Digest]int64{}
			for _, l := range rec.Layers {
				o, err := objsOf(l)
				if err != nil {
					return err
				}
				for d, n := range o {
					all[d] = n
				}
			}
			for d := range all {
				holders[d]++
			}
			imgObjs[rec.ID] = all
			ids = append(ids, rec.ID)
			return nil
		})
		if err != nil {
			return err
		}
		reclaim := map[digest.Digest]bool{}
		inUse := map[digest.Digest]bool{}
		for _, id := range ids {
			img, err := getImage(tx, id, tags)
			if err != nil {
				return err
			}
			u := ImageUsage{ID: id, RepoTags: img.RepoTags, Size: img.Size, Mounts: mounted[id]}
			for d, n := range imgObjs[id] {
				if holders[d] > 1 {
					u.SharedSize += n
				} else {
					u.UniqueSize += n
				}
				if mounted[id] > 0 {
					inUse[d] = true
				} else {
					reclaim[d] = true
				}
			}
			du.ImagesSize += img.Size
			du.Images = append(du.Images, u)
		}
		return bucket(tx, bucketObjects).ForEach(func(k, v []byte) error {
			rec, err := unmarshalObject(v)
			if err != nil {
				return fmt.Errorf("object %s: %w", k, err)
			}
			d := digest.Digest(k)
			du.Objects++
			du.ObjectsSize += rec.Size
			du.ObjectsOnDisk += diskUsage(s.ObjectPath(d))
			if reclaim[d] && !inUse[d] {
				du.Reclaimable += rec.Size
			}
			return nil
		})
	})
	return du, err
}

// LayerInfo describes a stored layer.
type LayerInfo struct {
	DiffID      digest.Digest
	BlobDigests []digest.Digest
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
		li = LayerInfo{DiffID: lr.DiffID, BlobDigests: lr.BlobDigests, Compression: lr.Compression, TarSize: lr.TarSize, Size: lr.Size, Entries: lr.Entries}
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
