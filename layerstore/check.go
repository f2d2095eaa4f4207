package layerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	bolt "go.etcd.io/bbolt"
)

// CheckReport is what Check found. Problems are broken invariants, each an
// error wrapping ErrCorrupt (and the error that revealed it, if any); Garbage
// is what a crash or an interrupted command may leave and GC removes.
type CheckReport struct {
	Problems []error
	Garbage  []string
	// Downloads are blobs a pull began and did not finish (see Download):
	// "sha256:… (N bytes)", for the next pull to resume and GC to remove.
	Downloads                              []string
	Images, Layers, Trees, Objects, Mounts int
}

// OK reports whether the store has no problems (garbage is allowed).
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

// checkError is one problem: its message as Check words it, wrapping
// ErrCorrupt and the errors among its arguments.
type checkError struct {
	msg  string
	errs []error
}

func (e *checkError) Error() string   { return e.msg }
func (e *checkError) Unwrap() []error { return e.errs }

// checker is one run of Check: what it found so far, and what a later step
// needs of an earlier one. One method a bucket (or directory), in the order
// Check runs them, as bbolt's tx_check.go checks a page kind a function.
type checker struct {
	s        *Store
	contents bool
	r        *CheckReport
	objects  map[digest.Digest]objectRecord // the objects bucket
	named    map[digest.Digest]uint64       // object -> how many layers name it
	replay   []layerEntriesOf               // layers whose tar split to replay, after the view
	treeRefs map[digest.Digest]bool         // tree files the tree records name
}

type layerEntriesOf struct {
	d       digest.Digest
	entries []*Entry
}

func (c *checker) problem(format string, args ...any) {
	e := &checkError{msg: fmt.Sprintf(format, args...), errs: []error{ErrCorrupt}}
	for _, a := range args {
		if err, ok := a.(error); ok {
			e.errs = append(e.errs, err)
		}
	}
	c.r.Problems = append(c.r.Problems, e)
}

func (c *checker) garbage(format string, args ...any) {
	c.r.Garbage = append(c.r.Garbage, fmt.Sprintf(format, args...))
}

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
	c := &checker{s: s, contents: contents, r: &CheckReport{}, objects: map[digest.Digest]objectRecord{}, named: map[digest.Digest]uint64{}, treeRefs: map[digest.Digest]bool{}}
	err = s.view(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			c.problem("bbolt: %v", e)
		}
		c.layers(tx)
		c.objectRecords(tx)
		c.images(tx)
		c.refs(tx)
		c.holds(tx)
		c.trees(tx)
		c.mounts(tx)
		checkCache(tx, c.problem)
		c.unheld(tx)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, l := range c.replay {
		s.checkLayerTar(l.d, l.entries, c.problem)
	}
	c.objectFiles()
	c.treeFiles()
	c.staging()
	c.downloads()
	c.mountDirs()
	return c.r, nil
}

// layers checks each layer's record and entries, and counts the objects
// the layers name.
func (c *checker) layers(tx *bolt.Tx) {
	bucket(tx, bucketLayers).ForEach(func(k, _ []byte) error {
		c.r.Layers++
		d := digest.Digest(k)
		lr, err := getLayerRecord(tx, d)
		if err != nil {
			c.problem("%v", err)
			return nil
		}
		if lr.DiffID != d {
			c.problem("layer %s: record names %s", d, lr.DiffID)
		}
		entries, err := layerEntries(tx, d)
		if err != nil {
			c.problem("%v", err)
			return nil
		}
		byPath := map[string]*Entry{}
		for _, e := range entries {
			byPath[e.Path] = e
		}
		for _, e := range entries {
			if e.HardLink != "" {
				if t, ok := byPath[e.HardLink]; !ok || t.Type != TypeReg || t.HardLink != "" {
					c.problem("layer %s: %q hard-links to %q, not a plain file of the layer", d, e.Path, e.HardLink)
				} else if t.Digest != e.Digest {
					c.problem("layer %s: %q hard-links to %q but names another object", d, e.Path, e.HardLink)
				}
			}
			if e.Type == TypeReg && e.Digest.Validate() != nil {
				c.problem("layer %s: %q has bad digest %q", d, e.Path, e.Digest)
			}
		}
		if c.contents {
			c.replay = append(c.replay, layerEntriesOf{d, entries})
		}
		objs, err := layerObjects(tx, d)
		if err != nil {
			c.problem("%v", err)
		}
		for o := range objs {
			c.named[o]++
		}
		if len(entries) != lr.Entries {
			c.problem("layer %s: %d entries, record says %d", d, len(entries), lr.Entries)
		}
		return nil
	})
}

// objectRecords checks each object's record against the layers that name
// it, and that every object a layer names is recorded.
func (c *checker) objectRecords(tx *bolt.Tx) {
	bucket(tx, bucketObjects).ForEach(func(k, v []byte) error {
		c.r.Objects++
		d := digest.Digest(k)
		rec, err := unmarshalObject(v)
		if err != nil {
			c.problem("object %s: bad record", d)
			return nil
		}
		c.objects[d] = rec
		if rec.Refs == 0 {
			c.problem("object %s: record with no references", d)
		} else if rec.Refs != c.named[d] {
			c.problem("object %s: refcount %d, %d layers name it", d, rec.Refs, c.named[d])
		}
		return nil
	})
	for d := range c.named {
		if _, ok := c.objects[d]; !ok {
			c.problem("object %s: named by a layer, not recorded", d)
		}
	}
}

// images checks each image's record against its config and manifest, and
// that its layers are stored.
func (c *checker) images(tx *bolt.Tx) {
	bucket(tx, bucketImages).ForEach(func(k, v []byte) error {
		c.r.Images++
		id := digest.Digest(k)
		var rec imageRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			c.problem("image %s: %v", id, err)
			return nil
		}
		if digest.FromBytes(rec.Config) != id {
			c.problem("image %s: config hashes to %s", id, digest.FromBytes(rec.Config))
		}
		if rec.Manifest != nil && digest.FromBytes(rec.Manifest) != rec.ManifestDigest {
			c.problem("image %s: manifest does not hash to %s", id, rec.ManifestDigest)
		}
		cfg, err := parseConfig(rec.Config)
		if err != nil {
			c.problem("image %s: %v", id, err)
			return nil
		}
		if rec.ID != id {
			c.problem("image %s: record names %s", id, rec.ID)
		}
		if !slices.Equal(cfg.RootFS.DiffIDs, rec.Layers) {
			c.problem("image %s: record and config disagree on layers", id)
		}
		for _, d := range rec.Layers {
			if bucket(tx, bucketLayers).Bucket([]byte(d)) == nil {
				c.problem("image %s: layer %s missing", id, d)
			}
		}
		if len(rec.Layers) > 0 && identity.ChainID(rec.Layers) != rec.ChainID {
			c.problem("image %s: chainID %s is wrong", id, rec.ChainID)
		}
		return nil
	})
}

// refs checks that every tag names a stored image.
func (c *checker) refs(tx *bolt.Tx) {
	bucket(tx, bucketRefs).ForEach(func(k, v []byte) error {
		if bucket(tx, bucketImages).Get(v) == nil {
			c.problem("tag %s: names missing image %s", k, v)
		}
		return nil
	})
}

// holds checks that each hold names a tag and a holder; one whose tag is
// not there (yet: a holder takes it first) is garbage its holder releases.
func (c *checker) holds(tx *bolt.Tx) {
	bucket(tx, bucketHolds).ForEach(func(k, v []byte) error {
		if _, err := ParseTag(string(k)); err != nil || len(v) == 0 {
			c.problem("hold %q by %q: not a tag and a holder", k, v)
		} else if bucket(tx, bucketRefs).Get(k) == nil {
			c.garbage("hold on %s by %s: no such tag (its holder releases it)", k, v)
		}
		return nil
	})
}

// trees checks each merged tree's record and file, the file against the
// layers it is made of, and its entries against the objects.
func (c *checker) trees(tx *bolt.Tx) {
	bucket(tx, bucketTrees).ForEach(func(k, _ []byte) error {
		c.r.Trees++
		chain := digest.Digest(k)
		rec, err := getTreeRecord(tx, chain)
		if errors.Is(err, ErrNotFound) {
			c.garbage("tree %s: in the layout of an earlier version (gc drops it; it is built again when needed)", chain)
			return nil
		}
		if err != nil {
			c.problem("%v", err)
			return nil
		}
		c.treeRefs[rec.File] = true
		t, err := c.s.loadTree(tx, chain)
		if err != nil {
			c.problem("%v", err)
			return nil
		}
		defer t.Close()
		checkTreeAgainstLayers(tx, t, rec, c.problem)
		t.Walk(func(e *Entry) error {
			if e.Type == TypeReg {
				if _, ok := c.objects[e.Digest]; !ok {
					c.problem("tree %s: %q names unknown object %s", k, e.Path, e.Digest)
				}
			}
			if e.Ino == 0 || e.Ino >= t.NextIno {
				c.problem("tree %s: %q has inode %d outside [1,%d)", k, e.Path, e.Ino, t.NextIno)
			}
			return nil
		})
		return nil
	})
}

// treeFiles reports tree files no record names as garbage and, with
// contents, re-hashes those the records name.
func (c *checker) treeFiles() {
	names, err := readDirNames(c.s.treesDir())
	if err != nil {
		c.problem("trees: %v", err)
	}
	for _, n := range names {
		d := digest.NewDigestFromEncoded(digest.SHA256, n)
		if d.Validate() != nil || !c.treeRefs[d] {
			c.garbage("unreferenced tree file %s", filepath.Join(c.s.treesDir(), n))
		}
	}
	if !c.contents {
		return
	}
	files := make([]digest.Digest, 0, len(c.treeRefs))
	for d := range c.treeRefs {
		files = append(files, d)
	}
	slices.Sort(files)
	for _, d := range files {
		if got, err := hashFile(c.s.TreePath(d)); err != nil {
			c.problem("tree file %s: %v", d, err)
		} else if got != d {
			c.problem("tree file %s: content hashes to %s", d, got)
		}
	}
}

// mounts checks that every lease's layers are stored, and that a kept
// writable lease has its directory (AddMountDir makes both at once: one
// without it lost its top layer); a lease whose server is gone is garbage.
func (c *checker) mounts(tx *bolt.Tx) {
	mounts, err := mountsTx(tx)
	if err != nil {
		c.problem("%v", err)
	}
	for _, m := range mounts {
		c.r.Mounts++
		for _, d := range m.Layers {
			if bucket(tx, bucketLayers).Bucket([]byte(d)) == nil {
				c.problem("mount %s: layer %s missing", m.ID, d)
			}
		}
		if m.Keep && !m.ReadOnly && checkMountID(m.ID) == nil {
			if _, err := os.Lstat(c.s.MountDir(m.ID)); errors.Is(err, os.ErrNotExist) {
				c.problem("mount %s: kept top layer %s is gone", m.ID, c.s.MountDir(m.ID))
			} else if err != nil {
				c.problem("mount %s: %v", m.ID, err)
			}
		}
		if !m.Alive() {
			c.garbage("mount %s at %s: server %d is gone (strata umount or gc cleans it)", m.ID, m.Dir, m.PID)
		}
	}
}

// unheld reports as garbage the layers and trees no image or lease holds:
// what an interrupted removal (or an image removed while mounted, when its
// lease went) left, and GC deletes. It checks the holders index against
// the records too: an entry missing would let a removal delete what
// something holds, one too many would keep garbage for good.
func (c *checker) unheld(tx *bolt.Tx) {
	want := wantHolders(tx)
	heldLayer, heldTree := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for k := range want {
		d, _, _ := strings.Cut(k[1:], "\x00")
		switch k[0] {
		case holdLayer:
			heldLayer[digest.Digest(d)] = true
		case holdTree:
			heldTree[digest.Digest(d)] = true
		}
	}
	bucket(tx, bucketLayers).ForEach(func(k, _ []byte) error {
		if !heldLayer[digest.Digest(k)] {
			c.garbage("layer %s: no image or mount holds it", k)
		}
		return nil
	})
	bucket(tx, bucketTrees).ForEach(func(k, _ []byte) error {
		if !heldTree[digest.Digest(k)] {
			c.garbage("tree %s: no image or mount holds it", k)
		}
		return nil
	})
	if !indexCurrent(tx) {
		// A writer that does not keep the index (an older strata)
		// committed after it: update rebuilds it before the next write,
		// so what it lacks or has too many is no problem yet.
		c.garbage("holders index is behind another writer's commit; the next write (gc) rebuilds it")
		return
	}
	bucket(tx, bucketHolders).ForEach(func(k, _ []byte) error {
		if !want[string(k)] {
			c.problem("holders index: %s, which no record says", describeHolder(string(k)))
		}
		delete(want, string(k))
		return nil
	})
	for _, k := range slices.Sorted(maps.Keys(want)) {
		c.problem("holders index: %s is not recorded", describeHolder(k))
	}
}

// objectFiles checks objects/ against the object records: every recorded
// object is there with its size (and, with contents, its digest); a file no
// record names is garbage.
func (c *checker) objectFiles() {
	onDisk := map[digest.Digest]bool{}
	for i := 0; i < 256; i++ {
		dir := filepath.Join(c.s.objectsDir(), fmt.Sprintf("%02x", i))
		names, err := readDirNames(dir)
		if err != nil {
			c.problem("objects: %v", err)
			continue
		}
		for _, n := range names {
			d := digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%02x", i)+n)
			onDisk[d] = true
			if _, ok := c.objects[d]; !ok {
				c.garbage("unreferenced object %s", filepath.Join(dir, n))
			}
		}
	}
	keys := make([]digest.Digest, 0, len(c.objects))
	for d := range c.objects {
		keys = append(keys, d)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, d := range keys {
		rec := c.objects[d]
		if !onDisk[d] {
			c.problem("object %s: file missing", d)
			continue
		}
		fi, err := os.Stat(c.s.ObjectPath(d))
		if err != nil {
			c.problem("object %s: %v", d, err)
			continue
		}
		if fi.Size() != rec.Size {
			c.problem("object %s: file has %d bytes, record says %d", d, fi.Size(), rec.Size)
			continue
		}
		if c.contents {
			if got, err := hashFile(c.s.ObjectPath(d)); err != nil {
				c.problem("object %s: %v", d, err)
			} else if got != d {
				c.problem("object %s: content hashes to %s", d, got)
			}
		}
	}
}

// staging reports what an interrupted import left in tmp/.
func (c *checker) staging() {
	names, _ := readDirNames(c.s.tmpDir())
	for _, n := range names {
		c.garbage("staging leftover %s", filepath.Join(c.s.tmpDir(), n))
	}
}

// downloads lists the downloads a pull left; anything else under
// downloads/ is garbage.
func (c *checker) downloads() {
	dls, other, err := c.s.downloads()
	if err != nil {
		c.problem("downloads: %v", err)
		return
	}
	for _, n := range slices.Sorted(maps.Keys(dls)) {
		c.r.Downloads = append(c.r.Downloads, fmt.Sprintf("sha256:%s (%d bytes)", n, dls[n]))
	}
	for _, n := range other {
		c.garbage("not a download %s", filepath.Join(c.s.downloadsDir(), n))
	}
}

// mountDirs reports the directories under mounts/ that no lease names.
func (c *checker) mountDirs() {
	// Read with the leases, in one transaction: a session makes its
	// directory with its lease or after it, so one starting meanwhile is
	// not reported.
	var orphans []string
	c.s.view(func(tx *bolt.Tx) error {
		names, _ := readDirNames(c.s.mountsDir())
		mb := bucket(tx, bucketMounts)
		for _, n := range names {
			if mb.Get([]byte(n)) == nil {
				orphans = append(orphans, n)
			}
		}
		return nil
	})
	for _, n := range orphans {
		c.garbage("mount directory without a lease %s", filepath.Join(c.s.mountsDir(), n))
	}
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
// mount trusts it. The encoding is deterministic, so the rebuilt file must
// be the stored file byte for byte.
func checkTreeAgainstLayers(tx *bolt.Tx, t *Tree, rec *treeRecord, bad func(string, ...any)) {
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
	if d := digest.FromBytes(want.Bytes()); d != rec.File {
		bad("tree %s: the merge of its layers is tree file %s, record names %s", t.ChainID, d, rec.File)
	}
	if bytes.Equal(want.Bytes(), t.Bytes()) {
		return
	}
	if want.NextIno != t.NextIno {
		bad("tree %s: next inode %d, rebuilt %d", t.ChainID, t.NextIno, want.NextIno)
	}
	differs := 0
	want.Walk(func(we *Entry) error {
		ge, ok := t.Lookup(we.Path)
		if !ok {
			bad("tree %s: %q missing", t.ChainID, we.Path)
			differs++
			return nil
		}
		gb, _ := ge.MarshalBinary()
		wb, _ := we.MarshalBinary()
		if string(gb) != string(wb) {
			bad("tree %s: %q differs from the merge of its layers", t.ChainID, we.Path)
			differs++
		}
		return nil
	})
	t.Walk(func(ge *Entry) error {
		if _, ok := want.Lookup(ge.Path); !ok {
			bad("tree %s: %q is not in the merge of its layers", t.ChainID, ge.Path)
			differs++
		}
		return nil
	})
	if differs == 0 {
		bad("tree %s: file differs from the merge of its layers", t.ChainID)
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
	st, err := s.newStaging()
	if err != nil {
		bad("layer %s: %v", diffID, err)
		return
	}
	defer st.discard()
	st.replay = true
	ing, err := s.parseLayer(context.Background(), LayerBlob{Size: -1, Open: func() (io.ReadCloser, error) { return rc, nil }}, st, nil, nil, -1)
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
