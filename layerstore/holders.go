package layerstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// The holders index (holders/ in schema.go) says, of each layer and each
// tree, which images and leases hold it, of each tree file which trees
// name it, and of each image which tags and build cache keys name it: what
// a removal releases is looked up, not found by reading every image, lease
// and tree record of the store, so removing an image costs the same beside
// 10 images or 10,000, and so does reading one image's tags. It changes in the transactions that add
// and delete those records, so it is never behind them, whatever a crash
// interrupts; Check compares it with what the records say (wantHolders),
// and Open builds it for a store of an earlier schema.
//
// A key is a kind byte, a digest, a NUL and a holder; the value is empty:
//
//	'l' diffID  NUL 'i' image ID   layer held by an image
//	'l' diffID  NUL 'm' mount ID   layer held by a lease
//	't' chainID NUL 'i' image ID   tree held by an image
//	't' chainID NUL 'm' mount ID   tree held by a lease
//	'f' file    NUL 't' chainID    tree file named by a tree record
//	'n' image ID NUL 'r' name:tag  image named by a tag (refs/)
//	'n' image ID NUL 'c' step key  image named by a build cache entry
const (
	holdLayer = 'l'
	holdTree  = 't'
	holdFile  = 'f'
	holdName  = 'n'
)

func holderPrefix(kind byte, d digest.Digest) []byte {
	return append(append([]byte{kind}, d...), 0)
}

func holderKey(kind byte, d digest.Digest, holder string) []byte {
	return append(holderPrefix(kind, d), holder...)
}

func imageHolder(id digest.Digest) string { return "i" + string(id) }
func mountHolder(id string) string        { return "m" + id }
func treeHolder(chain digest.Digest) string {
	return "t" + string(chain)
}
func tagHolder(tag string) string   { return "r" + tag }
func cacheHolder(key string) string { return "c" + key }

// namesOf lists the names of image id of one kind of holder ('r' tags,
// 'c' build cache keys), without the kind: one key range of the index.
func namesOf(tx *bolt.Tx, id digest.Digest, kind byte) []string {
	var out []string
	if !indexCurrent(tx) {
		// Behind another writer's commit: the records say (both buckets
		// are sorted by name, as the index is).
		b := bucketRefs
		if kind == 'c' {
			b = bucketCache
		}
		bucket(tx, b).ForEach(func(k, v []byte) error {
			if string(v) == string(id) {
				out = append(out, string(k))
			}
			return nil
		})
		return out
	}
	p := append(holderPrefix(holdName, id), kind)
	c := bucket(tx, bucketHolders).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		out = append(out, string(k[len(p):]))
	}
	return out
}

// holding is one thing held: a layer (holdLayer) or a tree (holdTree).
type holding struct {
	kind byte
	d    digest.Digest
}

// holds is what one image or lease holds: its layers and its chain's tree.
func holds(layers []digest.Digest, chain digest.Digest) []holding {
	out := make([]holding, 0, len(layers)+1)
	for _, d := range layers {
		out = append(out, holding{holdLayer, d})
	}
	if chain != "" {
		out = append(out, holding{holdTree, chain})
	}
	return out
}

// hold records (or, with release, drops) what holder holds.
func hold(tx *bolt.Tx, holder string, layers []digest.Digest, chain digest.Digest, release bool) error {
	hb := bucket(tx, bucketHolders)
	for _, h := range holds(layers, chain) {
		k := holderKey(h.kind, h.d, holder)
		var err error
		if release {
			err = hb.Delete(k)
		} else {
			err = hb.Put(k, []byte{})
		}
		if err != nil {
			return fmt.Errorf("holders of %s: %w", h.d, err)
		}
	}
	return nil
}

// isHeld reports whether anything holds the layer, tree or tree file d.
func isHeld(tx *bolt.Tx, kind byte, d digest.Digest) bool {
	p := holderPrefix(kind, d)
	k, _ := bucket(tx, bucketHolders).Cursor().Seek(p)
	return k != nil && bytes.HasPrefix(k, p)
}

// holdersOf lists the holders of the layer, tree or tree file d.
func holdersOf(tx *bolt.Tx, kind byte, d digest.Digest) []string {
	p := holderPrefix(kind, d)
	var out []string
	c := bucket(tx, bucketHolders).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		out = append(out, string(k[len(p):]))
	}
	return out
}

// releaseAll drops every hold of holder, reading the whole index: for a
// lease whose record cannot be read to say what it held.
func releaseAll(tx *bolt.Tx, holder string) error {
	hb := bucket(tx, bucketHolders)
	var doomed [][]byte
	hb.ForEach(func(k, _ []byte) error {
		if i := bytes.IndexByte(k, 0); i >= 0 && string(k[i+1:]) == holder {
			doomed = append(doomed, slices.Clone(k))
		}
		return nil
	})
	for _, k := range doomed {
		if err := hb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// wantHolders is what the holders index must hold, read from the image,
// lease and tree records: the index of Open's migration, and what Check
// compares the stored one with. Records that do not parse are left out
// (Check reports them on their own).
func wantHolders(tx *bolt.Tx) map[string]bool {
	want := map[string]bool{}
	add := func(holder string, layers []digest.Digest, chain digest.Digest) {
		for _, h := range holds(layers, chain) {
			want[string(holderKey(h.kind, h.d, holder))] = true
		}
	}
	bucket(tx, bucketImages).ForEach(func(k, v []byte) error {
		var c imageCore
		if json.Unmarshal(v, &c) == nil {
			add(imageHolder(digest.Digest(k)), c.Layers, c.ChainID)
		}
		return nil
	})
	bucket(tx, bucketMounts).ForEach(func(k, v []byte) error {
		var m MountRecord
		if json.Unmarshal(v, &m) == nil {
			add(mountHolder(string(k)), m.Layers, m.ChainID)
		}
		return nil
	})
	bucket(tx, bucketTrees).ForEach(func(k, _ []byte) error {
		if f, err := getTreeFile(tx, digest.Digest(k)); err == nil {
			want[string(holderKey(holdFile, f.File, treeHolder(digest.Digest(k))))] = true
		}
		return nil
	})
	bucket(tx, bucketRefs).ForEach(func(k, v []byte) error {
		want[string(holderKey(holdName, digest.Digest(v), tagHolder(string(k))))] = true
		return nil
	})
	bucket(tx, bucketCache).ForEach(func(k, v []byte) error {
		want[string(holderKey(holdName, digest.Digest(v), cacheHolder(string(k))))] = true
		return nil
	})
	return want
}

// buildHolders makes the holders index anew from the records.
func buildHolders(tx *bolt.Tx) error {
	r := tx.Bucket(bucketRoot)
	if r.Bucket(bucketHolders) != nil {
		if err := r.DeleteBucket(bucketHolders); err != nil {
			return err
		}
	}
	hb, err := r.CreateBucket(bucketHolders)
	if err != nil {
		return err
	}
	keys := make([]string, 0)
	for k := range wantHolders(tx) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	hb.FillPercent = 1 // keys arrive sorted
	for _, k := range keys {
		if err := hb.Put([]byte(k), []byte{}); err != nil {
			return err
		}
	}
	return nil
}

// describeHolder words an index key for Check: "layer sha256:… held by
// image sha256:…".
func describeHolder(k string) string {
	d, h, ok := strings.Cut(k, "\x00")
	if !ok || d == "" || h == "" {
		return fmt.Sprintf("key %q", k)
	}
	kind := d[0]
	d = d[1:]
	what := map[byte]string{holdLayer: "layer", holdTree: "tree", holdFile: "tree file", holdName: "image"}[kind]
	by := map[byte]string{'i': "image", 'm': "mount", 't': "tree"}[h[0]]
	if kind == holdName {
		by = map[byte]string{'r': "tag", 'c': "build cache key"}[h[0]]
	}
	if kind == holdFile || kind == holdName {
		return fmt.Sprintf("%s %s named by %s %s", what, d, by, h[1:])
	}
	return fmt.Sprintf("%s %s held by %s %s", what, d, by, h[1:])
}
