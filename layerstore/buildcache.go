package layerstore

import (
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// The build cache maps a build step's key (package build says what goes
// into it) to the image the step made, and records every image a step made
// (buildimages: the intermediate images, even those a --no-cache build
// made again under a key). An entry names an image that exists:
// it is written in one transaction that checks so, and the deletion of an
// image drops its entries (deleteImage, which finds them in the holders
// index), so a cached step costs one small key and no layer of its own.

// CacheGet returns the image cached under key, ErrNotFound if none.
func (s *Store) CacheGet(key string) (Image, error) {
	var img Image
	err := s.view(func(tx *bolt.Tx) error {
		v := bucket(tx, bucketCache).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("build cache %s: %w", key, ErrNotFound)
		}
		id := digest.Digest(v)
		var err error
		img, err = getImage(tx, id, map[digest.Digest][]string{id: tagsOf(tx, id)}, nil)
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
	cb, hb := bucket(tx, bucketCache), bucket(tx, bucketHolders)
	if old := cb.Get([]byte(key)); old != nil && string(old) != string(id) {
		if err := hb.Delete(holderKey(holdName, digest.Digest(old), cacheHolder(key))); err != nil {
			return err
		}
	}
	if err := hb.Put(holderKey(holdName, id, cacheHolder(key)), []byte{}); err != nil {
		return err
	}
	return cb.Put([]byte(key), []byte(id))
}

// dropCacheOf deletes the build cache entries of image id, which is being
// deleted: those the holders index names, and its buildimages record.
func dropCacheOf(tx *bolt.Tx, id digest.Digest) error {
	cb, hb := bucket(tx, bucketCache), bucket(tx, bucketHolders)
	for _, key := range namesOf(tx, id, 'c') {
		if v := cb.Get([]byte(key)); v != nil && string(v) == string(id) {
			if err := cb.Delete([]byte(key)); err != nil {
				return err
			}
		}
		if err := hb.Delete(holderKey(holdName, id, cacheHolder(key))); err != nil {
			return err
		}
	}
	return bucket(tx, bucketBuilt).Delete([]byte(id))
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
		hb := bucket(tx, bucketHolders)
		if err := bucket(tx, bucketCache).ForEach(func(k, v []byte) error {
			return hb.Delete(holderKey(holdName, digest.Digest(v), cacheHolder(string(k))))
		}); err != nil {
			return nil, err
		}
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

// dropStaleCache deletes the cache entries whose image is gone, reading
// the whole cache: GC's sweep, for what a writer that did not keep the
// index left (an image's own entries go with it: deleteImage).
func dropStaleCache(tx *bolt.Tx) error {
	cb, ib, hb := bucket(tx, bucketCache), bucket(tx, bucketImages), bucket(tx, bucketHolders)
	var stale [][2][]byte
	cb.ForEach(func(k, v []byte) error {
		if ib.Get(v) == nil {
			stale = append(stale, [2][]byte{slices.Clone(k), slices.Clone(v)})
		}
		return nil
	})
	for _, kv := range stale {
		if err := hb.Delete(holderKey(holdName, digest.Digest(kv[1]), cacheHolder(string(kv[0])))); err != nil {
			return err
		}
		if err := cb.Delete(kv[0]); err != nil {
			return err
		}
	}
	bb := bucket(tx, bucketBuilt)
	var gone [][]byte
	bb.ForEach(func(k, _ []byte) error {
		if ib.Get(k) == nil {
			gone = append(gone, slices.Clone(k))
		}
		return nil
	})
	for _, k := range gone {
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
