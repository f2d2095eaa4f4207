package layerstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	bolt "go.etcd.io/bbolt"
)

// treeRecord is the value of trees/<chainID>/meta.
type treeRecord struct {
	ChainID digest.Digest   `json:"chainID"`
	Layers  []digest.Digest `json:"layers"` // diffIDs, base first
	NextIno uint64          `json:"nextIno"`
	Entries int             `json:"entries"`
}

// ensureTree makes sure the merged tree of the chain diffIDs is stored,
// building it from the longest stored ancestor chain.
func (s *Store) ensureTree(tx *bolt.Tx, diffIDs []digest.Digest) (*Tree, error) {
	chain := identity.ChainIDs(append([]digest.Digest(nil), diffIDs...)) // ChainIDs works in place
	top := chain[len(chain)-1]
	tb := bucket(tx, bucketTrees)
	if tb.Bucket([]byte(top)) != nil {
		return nil, nil
	}
	start := 0
	var base *Tree
	for i := len(chain) - 2; i >= 0; i-- {
		if tb.Bucket([]byte(chain[i])) != nil {
			var err error
			if base, err = loadTree(tx, chain[i]); err != nil {
				return nil, err
			}
			start = i + 1
			break
		}
	}
	b := newTreeBuilder(base)
	for i := start; i < len(diffIDs); i++ {
		entries, err := layerEntries(tx, diffIDs[i])
		if err != nil {
			return nil, err
		}
		if err := b.applyLayer(entries); err != nil {
			return nil, fmt.Errorf("layer %s: %w", diffIDs[i], err)
		}
	}
	t := b.finish(top)
	return t, writeTree(tx, t, diffIDs)
}

func writeTree(tx *bolt.Tx, t *Tree, diffIDs []digest.Digest) error {
	b, err := bucket(tx, bucketTrees).CreateBucket([]byte(t.ChainID))
	if err != nil {
		return fmt.Errorf("tree %s: %w", t.ChainID, err)
	}
	meta, _ := json.Marshal(treeRecord{ChainID: t.ChainID, Layers: diffIDs, NextIno: t.NextIno, Entries: t.Len()})
	if err := b.Put(keyMeta, meta); err != nil {
		return err
	}
	eb, err := b.CreateBucket(bucketEnts)
	if err != nil {
		return err
	}
	eb.FillPercent = 1
	type kv struct {
		k []byte
		e *Entry
	}
	all := make([]kv, 0, t.Len())
	for p, e := range t.entries {
		all = append(all, kv{Key(p), e})
	}
	sort.Slice(all, func(i, j int) bool { return bytes.Compare(all[i].k, all[j].k) < 0 })
	for _, x := range all {
		v, _ := x.e.MarshalBinary()
		if err := eb.Put(x.k, v); err != nil {
			return err
		}
	}
	return nil
}

// loadTree reads a stored tree. The key order gives each directory's
// children already sorted.
func loadTree(tx *bolt.Tx, chainID digest.Digest) (*Tree, error) {
	b := bucket(tx, bucketTrees).Bucket([]byte(chainID))
	if b == nil {
		return nil, fmt.Errorf("tree %s: %w", chainID, ErrNotFound)
	}
	var rec treeRecord
	if err := json.Unmarshal(b.Get(keyMeta), &rec); err != nil {
		return nil, fmt.Errorf("tree %s: %w: %w", chainID, err, ErrCorrupt)
	}
	t := &Tree{ChainID: chainID, NextIno: rec.NextIno, entries: make(map[string]*Entry, rec.Entries), kids: map[string][]*Entry{}}
	eb := b.Bucket(bucketEnts)
	if eb == nil {
		return nil, fmt.Errorf("tree %s: no entries: %w", chainID, ErrCorrupt)
	}
	err := eb.ForEach(func(k, v []byte) error {
		e := &Entry{Path: PathOfKey(k)}
		if err := e.UnmarshalBinary(v); err != nil {
			return fmt.Errorf("tree %s entry %q: %w", chainID, e.Path, err)
		}
		t.entries[e.Path] = e
		if e.Path != "" {
			dir := parentOf(e.Path)
			t.kids[dir] = append(t.kids[dir], e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if r, ok := t.entries[""]; !ok || r.Type != TypeDir {
		return nil, fmt.Errorf("tree %s: no root directory: %w", chainID, ErrCorrupt)
	}
	return t, nil
}

// emptyTree is the tree of an image without layers.
func emptyTree() *Tree { return newTreeBuilder(nil).finish("") }

// ImageTree resolves ref and returns the image and its merged tree, built
// now if it is not stored yet.
func (s *Store) ImageTree(ref string) (Image, *Tree, error) {
	img, err := s.ResolveImage(ref)
	if err != nil {
		return img, nil, err
	}
	if img.ChainID == "" {
		return img, emptyTree(), nil
	}
	var t *Tree
	err = s.view(func(tx *bolt.Tx) error {
		if bucket(tx, bucketTrees).Bucket([]byte(img.ChainID)) == nil {
			return nil
		}
		t, err = loadTree(tx, img.ChainID)
		return err
	})
	if err != nil || t != nil {
		return img, t, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		built, err := s.ensureTree(tx, img.Layers)
		if err != nil || built != nil {
			t = built
			return err
		}
		t, err = loadTree(tx, img.ChainID)
		return err
	})
	return img, t, err
}

// LayerTree returns the tree of the chain of diffIDs (a prefix of some image),
// building it in memory if it is not stored.
func (s *Store) LayerTree(diffIDs []digest.Digest) (*Tree, error) {
	if len(diffIDs) == 0 {
		return emptyTree(), nil
	}
	var t *Tree
	err := s.view(func(tx *bolt.Tx) error {
		chain := identity.ChainID(diffIDs)
		if bucket(tx, bucketTrees).Bucket([]byte(chain)) != nil {
			var err error
			t, err = loadTree(tx, chain)
			return err
		}
		b := newTreeBuilder(nil)
		for _, d := range diffIDs {
			entries, err := layerEntries(tx, d)
			if err != nil {
				return err
			}
			if err := b.applyLayer(entries); err != nil {
				return fmt.Errorf("layer %s: %w", d, err)
			}
		}
		t = b.finish(chain)
		return nil
	})
	return t, err
}
