package layerstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// ImageUsage is one image's share of the store.
type ImageUsage struct {
	ID         digest.Digest
	RepoTags   []string
	Size       int64  // content bytes of its layers
	SharedSize int64  // bytes of objects another image also holds
	UniqueSize int64  // bytes of objects only this image holds
	Mounts     int    // live mounts of it
	HeldBy     string // the holder of a held tag of it (Hold), "" for none
}

// MountUsage is one mount's share of the store.
type MountUsage struct {
	ID    string
	Size  int64 // disk space of its directory (MountUsage); 0 when it is gone
	Alive bool  // its server runs (MountRecord.Alive)
}

// LayerUsage is one layer's share of the store.
type LayerUsage struct {
	DiffID digest.Digest
	Size   int64 // content bytes
	Images int   // images that hold it
	Mounts int   // live mounts that use it
	// HeldBy names the holders (Hold) of the images that hold it, sorted:
	// prune and rmi leave it while one does.
	HeldBy []string
}

// TreeUsage is one stored merged tree (a chain's, see ImageTree).
type TreeUsage struct {
	ChainID digest.Digest
	Layers  int   // layers in the chain
	Entries int   // entries of the merged tree
	Size    int64 // disk space of its tree file (chains with the same merged tree share one)
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
	MountsSize    int64 // bytes in the directories of mounts (their top layers)
	Reclaimable   int64 // bytes of objects that only images without a live mount hold
	Trees         int   // tree files under trees/ the stored trees name, each once
	TreesOnDisk   int64 // bytes those tree files take on disk
	// TreeUsage lists the stored trees in chain ID order.
	TreeUsage []TreeUsage
	// MountUsage lists the mounts in ID order.
	MountUsage []MountUsage
	// LayerUsage lists the layers images hold, image by image (newest image
	// first, as Images lists them; each image's layers base first, each
	// layer once), then those only live mounts use. Layers nothing holds
	// (GC's to remove) are not listed.
	LayerUsage []LayerUsage
}

// MountUsage is the disk space of mount id's directory (its top layer and
// whatever else the mount keeps there), measured by DirUsage.
func (s *Store) MountUsage(id string) (int64, error) {
	return DirUsage(s.MountDir(id))
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
		var live []MountRecord
		for _, m := range mounts {
			mu := MountUsage{ID: m.ID, Alive: m.Alive()}
			if mu.Alive {
				mounted[m.Image]++
				live = append(live, m)
			}
			// A mount whose directory is gone takes no space.
			mu.Size, _ = s.MountUsage(m.ID)
			du.Mounts++
			du.MountsSize += mu.Size
			du.MountUsage = append(du.MountUsage, mu)
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
		var imgs []Image
		for _, id := range ids {
			img, err := getImage(tx, id, tags, nil)
			if err != nil {
				return err
			}
			imgs = append(imgs, img)
			u := ImageUsage{ID: id, RepoTags: img.RepoTags, Size: img.Size, Mounts: mounted[id]}
			_, u.HeldBy = heldTag(tx, img.RepoTags)
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
		if du.LayerUsage, err = layerUsage(tx, imgs, live, du.Images); err != nil {
			return err
		}
		if err := s.treeUsage(tx, du); err != nil {
			return err
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

// treeUsage accounts the stored trees and their files. A tree in the
// layout of an earlier version (no file) takes no file and is not listed.
func (s *Store) treeUsage(tx *bolt.Tx, du *DiskUsage) error {
	files := map[digest.Digest]bool{}
	return bucket(tx, bucketTrees).ForEach(func(k, _ []byte) error {
		rec, err := getTreeRecord(tx, digest.Digest(k))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		size := diskUsage(s.TreePath(rec.File))
		if !files[rec.File] {
			files[rec.File] = true
			du.Trees++
			du.TreesOnDisk += size
		}
		du.TreeUsage = append(du.TreeUsage, TreeUsage{ChainID: digest.Digest(k), Layers: len(rec.Layers), Entries: rec.Entries, Size: size})
		return nil
	})
}

// layerUsage accounts the layers of imgs and of the live mounts, in the
// order DiskUsage.LayerUsage documents.
func layerUsage(tx *bolt.Tx, imgs []Image, live []MountRecord, usage []ImageUsage) ([]LayerUsage, error) {
	heldBy := map[digest.Digest]string{}
	for _, u := range usage {
		heldBy[u.ID] = u.HeldBy
	}
	imgs = slices.Clone(imgs)
	sortImages(imgs)
	var out []LayerUsage
	at := map[digest.Digest]int{}
	add := func(d digest.Digest, size int64) int {
		i, ok := at[d]
		if !ok {
			i = len(out)
			at[d] = i
			out = append(out, LayerUsage{DiffID: d, Size: size})
		}
		return i
	}
	for _, img := range imgs {
		for i, d := range img.Layers {
			l := &out[add(d, img.LayerSizes[i])]
			l.Images++
			if h := heldBy[img.ID]; h != "" && !slices.Contains(l.HeldBy, h) {
				l.HeldBy = append(l.HeldBy, h)
				slices.Sort(l.HeldBy)
			}
		}
	}
	for _, m := range live {
		for _, d := range m.Layers {
			if _, ok := at[d]; !ok {
				lr, err := getLayerRecord(tx, d)
				if err != nil {
					return nil, fmt.Errorf("mount %s: %w", m.ID, err)
				}
				add(d, lr.Size)
			}
			out[at[d]].Mounts++
		}
	}
	return out, nil
}
