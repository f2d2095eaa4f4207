package layerstore

import (
	"fmt"

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
	return s.pruneImages(func(tx *bolt.Tx, tags map[digest.Digest][]string, used map[digest.Digest]bool) ([]digest.Digest, error) {
		var victims []digest.Digest
		bucket(tx, bucketBuilt).ForEach(func(k, _ []byte) error {
			if id := digest.Digest(k); len(tags[id]) == 0 && !used[id] {
				victims = append(victims, id)
			}
			return nil
		})
		for _, name := range [][]byte{bucketCache, bucketBuilt} {
			if err := tx.Bucket(bucketRoot).DeleteBucket(name); err != nil {
				return nil, err
			}
			if _, err := tx.Bucket(bucketRoot).CreateBucket(name); err != nil {
				return nil, err
			}
		}
		return victims, nil
	})
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
