package layerstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// TreePath is where the tree file of digest d lives. Tree files are
// immutable: open them O_RDONLY only.
func (s *Store) TreePath(d digest.Digest) string {
	h := d.Encoded()
	if d.Validate() != nil {
		h = "invalid"
	}
	return filepath.Join(s.treesDir(), h)
}

// treeRecord is the value of trees/<chainID>/meta. File names the tree
// file (trees/<hex> under the root) by the sha256 of its bytes.
type treeRecord struct {
	ChainID digest.Digest   `json:"chainID"`
	Layers  []digest.Digest `json:"layers"` // diffIDs, base first
	NextIno uint64          `json:"nextIno"`
	Entries int             `json:"entries"`
	File    digest.Digest   `json:"file"`
	Size    int64           `json:"size"`
}

// getTreeRecord reads the record of a stored tree. A tree stored in the
// bbolt layout of earlier versions (entries in e/, no file) is ErrNotFound:
// it is built again, as a file, when next needed.
func getTreeRecord(tx *bolt.Tx, chainID digest.Digest) (*treeRecord, error) {
	var rec treeRecord
	return &rec, readTreeRecord(tx, chainID, &rec, &rec.File)
}

// treeFile is what a mount needs of a treeRecord: json skips the layers.
type treeFile struct {
	NextIno uint64        `json:"nextIno"`
	Entries int           `json:"entries"`
	File    digest.Digest `json:"file"`
	Size    int64         `json:"size"`
}

func getTreeFile(tx *bolt.Tx, chainID digest.Digest) (*treeFile, error) {
	var rec treeFile
	return &rec, readTreeRecord(tx, chainID, &rec, &rec.File)
}

func readTreeRecord(tx *bolt.Tx, chainID digest.Digest, into any, file *digest.Digest) error {
	b := bucket(tx, bucketTrees).Bucket([]byte(chainID))
	if b == nil {
		return fmt.Errorf("tree %s: %w", chainID, ErrNotFound)
	}
	if err := json.Unmarshal(b.Get(keyMeta), into); err != nil {
		return fmt.Errorf("tree %s: %w: %w", chainID, err, ErrCorrupt)
	}
	if *file == "" {
		return fmt.Errorf("tree %s: stored without a tree file: %w", chainID, ErrNotFound)
	}
	if err := file.Validate(); err != nil {
		return fmt.Errorf("tree %s: file %q: %w", chainID, *file, ErrCorrupt)
	}
	return nil
}

func treeStored(tx *bolt.Tx, chainID digest.Digest) bool {
	_, err := getTreeFile(tx, chainID)
	return err == nil
}

// ensureTree makes sure the merged tree of the chain diffIDs is stored,
// building it from the longest stored ancestor chain. It returns the tree
// when it built one (the caller closes it), nil when it was stored already.
// The tree file is durable before the transaction names it.
func (s *Store) ensureTree(tx *bolt.Tx, diffIDs []digest.Digest) (*Tree, error) {
	chain := identity.ChainIDs(append([]digest.Digest(nil), diffIDs...)) // ChainIDs works in place
	top := chain[len(chain)-1]
	if treeStored(tx, top) {
		return nil, nil
	}
	start := 0
	var base *Tree
	for i := len(chain) - 2; i >= 0; i-- {
		if treeStored(tx, chain[i]) {
			var err error
			if base, err = s.loadTree(tx, chain[i]); err != nil {
				return nil, err
			}
			start = i + 1
			break
		}
	}
	defer base.Close() // the builder's entries share its strings
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
	return t, s.writeTree(tx, t, diffIDs)
}

// writeTree writes t's file (if no tree file of the same bytes exists) and
// the record naming it.
func (s *Store) writeTree(tx *bolt.Tx, t *Tree, diffIDs []digest.Digest) error {
	d, err := s.writeTreeFile(t.Bytes())
	if err != nil {
		return fmt.Errorf("tree %s: %w", t.ChainID, err)
	}
	tb := bucket(tx, bucketTrees)
	if tb.Bucket([]byte(t.ChainID)) != nil { // the layout of earlier versions
		if err := tb.DeleteBucket([]byte(t.ChainID)); err != nil {
			return err
		}
	}
	b, err := tb.CreateBucket([]byte(t.ChainID))
	if err != nil {
		return fmt.Errorf("tree %s: %w", t.ChainID, err)
	}
	meta, _ := json.Marshal(treeRecord{ChainID: t.ChainID, Layers: diffIDs, NextIno: t.NextIno, Entries: t.Len(), File: d, Size: int64(len(t.Bytes()))})
	if err := b.Put(keyMeta, meta); err != nil {
		return err
	}
	return bucket(tx, bucketHolders).Put(holderKey(holdFile, d, treeHolder(t.ChainID)), []byte{})
}

// writeTreeFile makes data a tree file, named by its digest: written to
// tmp/, fsynced, renamed into trees/, and the directory fsynced, as objects
// are. A file of that name is already these bytes.
func (s *Store) writeTreeFile(data []byte) (digest.Digest, error) {
	d := digest.FromBytes(data)
	p := s.TreePath(d)
	if fi, err := os.Stat(p); err == nil && fi.Size() == int64(len(data)) {
		return d, nil
	}
	f, err := os.CreateTemp(s.tmpDir(), "tree-")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o400)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return d, syncDir(s.treesDir())
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// loadTree maps a stored tree's file. The mapping stays valid when the
// file is removed (GC of an image removed while mounted): it ends with
// Close.
func (s *Store) loadTree(tx *bolt.Tx, chainID digest.Digest) (*Tree, error) {
	rec, err := getTreeFile(tx, chainID)
	if err != nil {
		return nil, err
	}
	t, err := s.mapTree(chainID, rec.File, rec.Size)
	if err != nil {
		return nil, err
	}
	if t.Len() != rec.Entries || t.NextIno != rec.NextIno {
		t.Close()
		return nil, fmt.Errorf("tree %s: file holds %d entries up to inode %d, record says %d and %d: %w", chainID, t.Len(), t.NextIno, rec.Entries, rec.NextIno, ErrCorrupt)
	}
	return t, nil
}

// mapTree maps tree file d of the given size read-only.
func (s *Store) mapTree(chainID, d digest.Digest, size int64) (*Tree, error) {
	p := s.TreePath(d)
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tree %s: file %s missing: %w", chainID, p, ErrCorrupt)
		}
		return nil, fmt.Errorf("tree %s: %w", chainID, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", chainID, err)
	}
	if fi.Size() != size || size < treeHeaderSize || size > math.MaxInt32*treeRecordSize {
		return nil, fmt.Errorf("tree %s: file %s has %d bytes, record says %d: %w", chainID, p, fi.Size(), size, ErrCorrupt)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("tree %s: mmap %s: %w", chainID, p, err)
	}
	t, err := newTree(chainID, b, func() error { return unix.Munmap(b) })
	if err != nil {
		unix.Munmap(b)
		return nil, fmt.Errorf("tree %s: %s: %w", chainID, p, err)
	}
	return t, nil
}

// emptyTree is the tree of an image without layers.
func emptyTree() *Tree { return newTreeBuilder(nil).finish("") }

// ImageTree resolves ref and returns the image and its merged tree, built
// now if it is not stored yet. The caller closes the tree.
func (s *Store) ImageTree(ref string) (Image, *Tree, error) {
	img, err := s.ResolveImage(ref)
	if err != nil {
		return img, nil, err
	}
	t, err := s.chainTree(imageCore{ID: img.ID, Layers: img.Layers, ChainID: img.ChainID})
	return img, t, err
}

// MountTree is ImageTree for a mount: the image's ID and its tree, without
// decoding the image's config (whose history grows with its layers), in one
// read transaction when the tree is stored.
func (s *Store) MountTree(ref string) (digest.Digest, *Tree, error) {
	var core imageCore
	var t *Tree
	err := s.view(func(tx *bolt.Tx) error {
		id, err := resolve(tx, ref)
		if err != nil {
			return err
		}
		if core, err = getImageCore(tx, id); err != nil {
			return err
		}
		if core.ChainID == "" {
			return nil
		}
		if t, err = s.loadTree(tx, core.ChainID); errors.Is(err, ErrNotFound) {
			return nil // not stored: built below
		}
		return err
	})
	if err != nil || t != nil {
		return core.ID, t, err
	}
	t, err = s.chainTree(core)
	return core.ID, t, err
}

// chainTree returns the tree of an image's chain, building and storing it
// if it is not stored.
func (s *Store) chainTree(img imageCore) (*Tree, error) {
	if img.ChainID == "" {
		return emptyTree(), nil
	}
	var t *Tree
	err := s.view(func(tx *bolt.Tx) error {
		if !treeStored(tx, img.ChainID) {
			return nil
		}
		var err error
		t, err = s.loadTree(tx, img.ChainID)
		return err
	})
	if err != nil || t != nil {
		return t, err
	}
	// Shared: GC (exclusive) must not sweep the new tree file between its
	// rename and the transaction that names it.
	lk, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()
	err = s.update(func(tx *bolt.Tx) error {
		built, err := s.ensureTree(tx, img.Layers)
		if err != nil || built != nil {
			t = built
			return err
		}
		t, err = s.loadTree(tx, img.ChainID)
		return err
	})
	return t, err
}

// LayerTree returns the tree of the chain of diffIDs (a prefix of some image),
// building it in memory if it is not stored. The caller closes the tree.
func (s *Store) LayerTree(diffIDs []digest.Digest) (*Tree, error) {
	if len(diffIDs) == 0 {
		return emptyTree(), nil
	}
	var t *Tree
	err := s.view(func(tx *bolt.Tx) error {
		chain := identity.ChainID(diffIDs)
		if treeStored(tx, chain) {
			var err error
			t, err = s.loadTree(tx, chain)
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
