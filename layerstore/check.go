package layerstore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	bolt "go.etcd.io/bbolt"
)

// CheckReport is what Check found. Problems are broken invariants; Garbage
// is what a crash or an interrupted command may leave and GC removes.
type CheckReport struct {
	Problems                               []string
	Garbage                                []string
	Images, Layers, Trees, Objects, Mounts int
}

// OK reports whether the store has no problems (garbage is allowed).
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

// Check verifies every cross-reference of the metadata, that every object
// file exists with its recorded size, and with contents that every object
// hashes to its digest.
func (s *Store) Check(contents bool) (*CheckReport, error) {
	// Shared: removals and GC (exclusive) must not delete objects between
	// the metadata snapshot and the walk of objects/.
	lk, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()
	r := &CheckReport{}
	bad := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	objects := map[digest.Digest]objectRecord{}
	type layerEntriesOf struct {
		d       digest.Digest
		entries []*Entry
	}
	var replay []layerEntriesOf // layers whose tar split to replay, after the view
	err = s.view(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			bad("bbolt: %v", e)
		}
		refs := map[digest.Digest]uint64{} // object -> layers naming it
		// layers
		bucket(tx, bucketLayers).ForEach(func(k, _ []byte) error {
			r.Layers++
			d := digest.Digest(k)
			lr, err := getLayerRecord(tx, d)
			if err != nil {
				bad("%v", err)
				return nil
			}
			if lr.DiffID != d {
				bad("layer %s: record names %s", d, lr.DiffID)
			}
			entries, err := layerEntries(tx, d)
			if err != nil {
				bad("%v", err)
				return nil
			}
			byPath := map[string]*Entry{}
			for _, e := range entries {
				byPath[e.Path] = e
			}
			for _, e := range entries {
				if e.HardLink != "" {
					if t, ok := byPath[e.HardLink]; !ok || t.Type != TypeReg || t.HardLink != "" {
						bad("layer %s: %q hard-links to %q, not a plain file of the layer", d, e.Path, e.HardLink)
					} else if t.Digest != e.Digest {
						bad("layer %s: %q hard-links to %q but names another object", d, e.Path, e.HardLink)
					}
				}
				if e.Type == TypeReg && e.Digest.Validate() != nil {
					bad("layer %s: %q has bad digest %q", d, e.Path, e.Digest)
				}
			}
			if contents {
				replay = append(replay, layerEntriesOf{d, entries})
			}
			objs, err := layerObjects(tx, d)
			if err != nil {
				bad("%v", err)
			}
			for o := range objs {
				refs[o]++
			}
			if len(entries) != lr.Entries {
				bad("layer %s: %d entries, record says %d", d, len(entries), lr.Entries)
			}
			return nil
		})
		// objects
		bucket(tx, bucketObjects).ForEach(func(k, v []byte) error {
			r.Objects++
			d := digest.Digest(k)
			rec, err := unmarshalObject(v)
			if err != nil {
				bad("object %s: bad record", d)
				return nil
			}
			objects[d] = rec
			if rec.Refs == 0 {
				bad("object %s: record with no references", d)
			} else if rec.Refs != refs[d] {
				bad("object %s: refcount %d, %d layers name it", d, rec.Refs, refs[d])
			}
			return nil
		})
		for d := range refs {
			if _, ok := objects[d]; !ok {
				bad("object %s: named by a layer, not recorded", d)
			}
		}
		// images and refs
		imageChains := map[digest.Digest]bool{}
		bucket(tx, bucketImages).ForEach(func(k, v []byte) error {
			r.Images++
			id := digest.Digest(k)
			var rec imageRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				bad("image %s: %v", id, err)
				return nil
			}
			if digest.FromBytes(rec.Config) != id {
				bad("image %s: config hashes to %s", id, digest.FromBytes(rec.Config))
			}
			if rec.Manifest != nil && digest.FromBytes(rec.Manifest) != rec.ManifestDigest {
				bad("image %s: manifest does not hash to %s", id, rec.ManifestDigest)
			}
			cfg, err := parseConfig(rec.Config)
			if err != nil {
				bad("image %s: %v", id, err)
				return nil
			}
			if rec.ID != id {
				bad("image %s: record names %s", id, rec.ID)
			}
			if !slices.Equal(cfg.RootFS.DiffIDs, rec.Layers) {
				bad("image %s: record and config disagree on layers", id)
			}
			for _, d := range rec.Layers {
				if bucket(tx, bucketLayers).Bucket([]byte(d)) == nil {
					bad("image %s: layer %s missing", id, d)
				}
			}
			if len(rec.Layers) > 0 && identity.ChainID(rec.Layers) != rec.ChainID {
				bad("image %s: chainID %s is wrong", id, rec.ChainID)
			}
			imageChains[rec.ChainID] = true
			return nil
		})
		bucket(tx, bucketRefs).ForEach(func(k, v []byte) error {
			if bucket(tx, bucketImages).Get(v) == nil {
				bad("tag %s: names missing image %s", k, v)
			}
			return nil
		})
		// trees
		bucket(tx, bucketTrees).ForEach(func(k, _ []byte) error {
			r.Trees++
			t, err := loadTree(tx, digest.Digest(k))
			if err != nil {
				bad("%v", err)
				return nil
			}
			checkTreeAgainstLayers(tx, t, bad)
			for p, e := range t.entries {
				if p != "" {
					if d, ok := t.entries[parentOf(p)]; !ok || d.Type != TypeDir {
						bad("tree %s: %q has no parent directory", k, p)
					}
				}
				if e.Type == TypeReg {
					if _, ok := objects[e.Digest]; !ok {
						bad("tree %s: %q names unknown object %s", k, p, e.Digest)
					}
				}
				if e.Type == TypeWhiteout || e.Type == TypeOpaque {
					bad("tree %s: %q is a %s", k, p, e.Type)
				}
				if e.Ino == 0 || e.Ino >= t.NextIno {
					bad("tree %s: %q has inode %d outside [1,%d)", k, p, e.Ino, t.NextIno)
				}
			}
			return nil
		})
		mounts, err := mountsTx(tx)
		if err != nil {
			bad("%v", err)
		}
		for _, m := range mounts {
			r.Mounts++
			for _, d := range m.Layers {
				if bucket(tx, bucketLayers).Bucket([]byte(d)) == nil {
					bad("mount %s: layer %s missing", m.ID, d)
				}
			}
			if !m.Alive() {
				r.Garbage = append(r.Garbage, fmt.Sprintf("mount %s at %s: server %d is gone (strata umount or gc cleans it)", m.ID, m.Dir, m.PID))
			}
		}
		// What an interrupted removal (or an image removed while mounted,
		// when its lease went) left: GC deletes it.
		keepLayer, keepTree, err := held(tx)
		if err != nil {
			bad("%v", err)
			return nil
		}
		bucket(tx, bucketLayers).ForEach(func(k, _ []byte) error {
			if !keepLayer[digest.Digest(k)] {
				r.Garbage = append(r.Garbage, fmt.Sprintf("layer %s: no image or mount holds it", k))
			}
			return nil
		})
		bucket(tx, bucketTrees).ForEach(func(k, _ []byte) error {
			if !keepTree[digest.Digest(k)] {
				r.Garbage = append(r.Garbage, fmt.Sprintf("tree %s: no image or mount holds it", k))
			}
			return nil
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, l := range replay {
		s.checkLayerTar(l.d, l.entries, bad)
	}
	// object files
	onDisk := map[digest.Digest]bool{}
	for i := 0; i < 256; i++ {
		dir := filepath.Join(s.objectsDir(), fmt.Sprintf("%02x", i))
		names, err := readDirNames(dir)
		if err != nil {
			bad("objects: %v", err)
			continue
		}
		for _, n := range names {
			d := digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%02x", i)+n)
			onDisk[d] = true
			if _, ok := objects[d]; !ok {
				r.Garbage = append(r.Garbage, "unreferenced object "+filepath.Join(dir, n))
			}
		}
	}
	keys := make([]digest.Digest, 0, len(objects))
	for d := range objects {
		keys = append(keys, d)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, d := range keys {
		rec := objects[d]
		if !onDisk[d] {
			bad("object %s: file missing", d)
			continue
		}
		fi, err := os.Stat(s.ObjectPath(d))
		if err != nil {
			bad("object %s: %v", d, err)
			continue
		}
		if fi.Size() != rec.Size {
			bad("object %s: file has %d bytes, record says %d", d, fi.Size(), rec.Size)
			continue
		}
		if contents {
			if got, err := hashFile(s.ObjectPath(d)); err != nil {
				bad("object %s: %v", d, err)
			} else if got != d {
				bad("object %s: content hashes to %s", d, got)
			}
		}
	}
	if names, _ := readDirNames(s.tmpDir()); len(names) > 0 {
		for _, n := range names {
			r.Garbage = append(r.Garbage, "staging leftover "+filepath.Join(s.tmpDir(), n))
		}
	}
	live := map[string]bool{}
	ms, _ := s.Mounts()
	for _, m := range ms {
		live[m.ID] = true
	}
	if names, _ := readDirNames(s.mountsDir()); len(names) > 0 {
		for _, n := range names {
			if !live[n] {
				r.Garbage = append(r.Garbage, "mount directory without a lease "+filepath.Join(s.mountsDir(), n))
			}
		}
	}
	return r, nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

func hashFile(p string) (digest.Digest, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", h.Sum(nil))), nil
}

// checkTreeAgainstLayers rebuilds a stored tree from the layers its record
// names and reports every entry that differs: a tree is derived data, and a
// mount trusts it.
func checkTreeAgainstLayers(tx *bolt.Tx, t *Tree, bad func(string, ...any)) {
	var rec treeRecord
	if err := json.Unmarshal(bucket(tx, bucketTrees).Bucket([]byte(t.ChainID)).Get(keyMeta), &rec); err != nil {
		bad("tree %s: %v", t.ChainID, err)
		return
	}
	if len(rec.Layers) == 0 || identity.ChainID(rec.Layers) != t.ChainID {
		bad("tree %s: stored under a key that is not the chainID of its layers", t.ChainID)
		return
	}
	b := newTreeBuilder(nil)
	for _, d := range rec.Layers {
		entries, err := layerEntries(tx, d)
		if err != nil {
			bad("tree %s: %v", t.ChainID, err)
			return
		}
		if err := b.applyLayer(entries); err != nil {
			bad("tree %s: layer %s: %v", t.ChainID, d, err)
			return
		}
	}
	want := b.finish(t.ChainID)
	if want.NextIno != t.NextIno {
		bad("tree %s: next inode %d, rebuilt %d", t.ChainID, t.NextIno, want.NextIno)
	}
	for p, we := range want.entries {
		ge, ok := t.entries[p]
		if !ok {
			bad("tree %s: %q missing", t.ChainID, p)
			continue
		}
		gb, _ := ge.MarshalBinary()
		wb, _ := we.MarshalBinary()
		if string(gb) != string(wb) {
			bad("tree %s: %q differs from the merge of its layers", t.ChainID, p)
		}
	}
	for p := range t.entries {
		if _, ok := want.entries[p]; !ok {
			bad("tree %s: %q is not in the merge of its layers", t.ChainID, p)
		}
	}
}

// checkLayerTar replays a layer's tar split: it must hash to the diffID and
// parse into the stored entries.
func (s *Store) checkLayerTar(diffID digest.Digest, entries []*Entry, bad func(string, ...any)) {
	rc, err := s.LayerTar(diffID)
	if errors.Is(err, ErrNotFound) {
		return // imported without a tar split
	}
	if err != nil {
		bad("layer %s: %v", diffID, err)
		return
	}
	defer rc.Close()
	st, err := s.newStaging(func(digest.Digest) bool { return true })
	if err != nil {
		bad("layer %s: %v", diffID, err)
		return
	}
	defer st.discard()
	ing, err := s.parseLayer(context.Background(), LayerBlob{Size: -1, Open: func() (io.ReadCloser, error) { return rc, nil }}, st, nil)
	if err != nil {
		bad("layer %s: tar split: %v", diffID, err)
		return
	}
	if ing.rec.DiffID != diffID {
		bad("layer %s: tar split gives a tar hashing to %s", diffID, ing.rec.DiffID)
		return
	}
	if len(ing.entries) != len(entries) {
		bad("layer %s: %d entries, its tar has %d", diffID, len(entries), len(ing.entries))
		return
	}
	for i, e := range entries {
		gb, _ := e.MarshalBinary()
		wb, _ := ing.entries[i].MarshalBinary()
		if e.Path != ing.entries[i].Path || string(gb) != string(wb) {
			bad("layer %s: entry %q differs from its tar", diffID, e.Path)
		}
	}
}
