package layerstore

import (
	"fmt"
	"sort"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// The build cache maps a build step's key (package build says what goes
// into it) to the image the step made, and records every image a step made
// (buildimages: the intermediate images, even those a --no-cache build
// made again under a key). An entry names an image that exists:
// it is written in one transaction that checks so, and every removal of
// images drops the entries of the images it removed (sweep), so a cached
// step costs one small key and no layer of its own.

// CacheGet returns the image cached under key, ErrNotFound if none.
func (s *Store) CacheGet(key string) (Image, error) {
	var img Image
	err := s.view(func(tx *bolt.Tx) error {
		v := bucket(tx, bucketCache).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("build cache %s: %w", key, ErrNotFound)
		}
		var err error
		img, err = getImage(tx, digest.Digest(v), allTags(tx))
		return err
	})
	return img, err
}

// CachePut records that the step of key made image id, which must exist.
func (s *Store) CachePut(key string, id digest.Digest) error {
	return s.update(func(tx *bolt.Tx) error { return putCache(tx, key, id) })
}

func putCache(tx *bolt.Tx, key string, id digest.Digest) error {
	if bucket(tx, bucketImages).Get([]byte(id)) == nil {
		return fmt.Errorf("build cache %s: image %s: %w", key, id, ErrNotFound)
	}
	if err := bucket(tx, bucketBuilt).Put([]byte(id), []byte(key)); err != nil {
		return err
	}
	return bucket(tx, bucketCache).Put([]byte(key), []byte(id))
}

// CacheImages returns the IDs of the images build steps made.
func (s *Store) CacheImages() (map[digest.Digest]bool, error) {
	ids := map[digest.Digest]bool{}
	err := s.view(func(tx *bolt.Tx) error {
		return bucket(tx, bucketBuilt).ForEach(func(k, _ []byte) error {
			ids[digest.Digest(k)] = true
			return nil
		})
	})
	return ids, err
}

// PruneCache empties the build cache and removes the images only it held
// (untagged, and used by no live mount), with their layers and objects
// nothing else holds, as docker builder prune drops the build cache.
func (s *Store) PruneCache() (*RemoveReport, error) {
	lk, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()
	rep := &RemoveReport{}
	var doomed []objectFile
	err = s.update(func(tx *bolt.Tx) error {
		tags := allTags(tx)
		mounts, err := mountsTx(tx)
		if err != nil {
			return err
		}
		used := map[digest.Digest]bool{}
		for _, m := range mounts {
			if m.Alive() || m.Keep {
				used[m.Image] = true
			}
		}
		victims := map[digest.Digest]bool{}
		bucket(tx, bucketBuilt).ForEach(func(k, _ []byte) error {
			if id := digest.Digest(k); len(tags[id]) == 0 && !used[id] {
				victims[id] = true
			}
			return nil
		})
		for _, name := range [][]byte{bucketCache, bucketBuilt} {
			if err := tx.Bucket(bucketRoot).DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.Bucket(bucketRoot).CreateBucket(name); err != nil {
				return err
			}
		}
		ib := bucket(tx, bucketImages)
		ids := make([]digest.Digest, 0, len(victims))
		for id := range victims {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids {
			if ib.Get([]byte(id)) == nil {
				continue
			}
			if err := ib.Delete([]byte(id)); err != nil {
				return err
			}
			rep.Deleted = append(rep.Deleted, id)
			rep.DeletedImages++
		}
		layers, d, err := sweep(tx)
		doomed = d
		rep.Deleted = append(rep.Deleted, layers...)
		return err
	})
	if err != nil {
		return nil, err
	}
	rep.Reclaimed = removeObjects(s, doomed)
	return rep, nil
}

// dropStaleCache deletes the cache entries whose image is gone: every
// removal of images ends with it (sweep), in the same transaction.
func dropStaleCache(tx *bolt.Tx) error {
	cb, ib := bucket(tx, bucketCache), bucket(tx, bucketImages)
	var stale [][]byte
	cb.ForEach(func(k, v []byte) error {
		if ib.Get(v) == nil {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range stale {
		if err := cb.Delete(k); err != nil {
			return err
		}
	}
	bb := bucket(tx, bucketBuilt)
	stale = stale[:0]
	bb.ForEach(func(k, _ []byte) error {
		if ib.Get(k) == nil {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range stale {
		if err := bb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// checkCache reports cache entries naming an image that is not there.
func checkCache(tx *bolt.Tx, bad func(string, ...any)) {
	ib := bucket(tx, bucketImages)
	bucket(tx, bucketCache).ForEach(func(k, v []byte) error {
		if ib.Get(v) == nil {
			bad("build cache %s: image %s missing", k, v)
		}
		return nil
	})
	bucket(tx, bucketBuilt).ForEach(func(k, _ []byte) error {
		if ib.Get(k) == nil {
			bad("build images: image %s missing", k)
		}
		return nil
	})
}
