package layerstore

// Review tests (internal package): ingest accounting, crash windows simulated
// at the exact steps of an import or a removal, refcounts read straight from
// bbolt, and the checker against corruption injected into bbolt values.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	bolt "go.etcd.io/bbolt"
)

// objectRefs reads the refcount of every object record.
func objectRefs(t *testing.T, s *Store) map[digest.Digest]uint64 {
	t.Helper()
	out := map[digest.Digest]uint64{}
	err := s.view(func(tx *bolt.Tx) error {
		return bucket(tx, bucketObjects).ForEach(func(k, v []byte) error {
			rec, err := unmarshalObject(v)
			if err != nil {
				return err
			}
			out[digest.Digest(k)] = rec.Refs
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// objectFiles lists the files under objects/.
func objectFiles(t *testing.T, s *Store) []string {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(s.Root(), "objects", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// mustEmpty asserts that GC left nothing: no records, no files, no garbage.
func mustEmpty(t *testing.T, s *Store, when string) {
	t.Helper()
	if refs := objectRefs(t, s); len(refs) != 0 {
		t.Errorf("%s: object records left: %v", when, refs)
	}
	if left := objectFiles(t, s); len(left) != 0 {
		t.Errorf("%s: object files left: %v", when, left)
	}
	r := checkOK(t, s, when)
	if len(r.Garbage) != 0 || r.Layers != 0 || r.Trees != 0 {
		t.Errorf("%s: %d layers, %d trees, garbage %v; want none", when, r.Layers, r.Trees, r.Garbage)
	}
}

// ---------------------------------------------------------------------------
// Ingest accounting

// A tar that names one path twice (tar -x keeps the last) must leave a store
// the checker passes, and removing the image must free every object.
func TestReview_Ingest_DuplicateEntries(t *testing.T) {
	cases := map[string][]tarEntry{
		"FileTwice":    {{name: "f", body: "one"}, {name: "f", body: "two"}},
		"FileThenDir":  {{name: "f", body: "one"}, {name: "f/", typ: tar.TypeDir}},
		"FileThenLink": {{name: "t", body: "target"}, {name: "f", body: "one"}, {name: "f", typ: tar.TypeLink, link: "t"}},
	}
	for name, ents := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := Open(t.TempDir(), &Options{LockTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			img, err := importLayers(t, s, "dup:1", makeTar(t, ents...))
			if err != nil {
				t.Fatal(err)
			}
			checkOK(t, s, "after import")
			// LayerTar still gives back the imported bytes (the first f's
			// content is in the tar, so its object must stay while the layer does).
			rc, err := s.LayerTar(img.Layers[0])
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			_, err = io.Copy(h, rc)
			rc.Close()
			if err != nil || fmt.Sprintf("sha256:%x", h.Sum(nil)) != string(img.Layers[0]) {
				t.Fatalf("LayerTar: %v", err)
			}
			if _, err := s.RemoveImage("dup:1", false); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GC(); err != nil {
				t.Fatal(err)
			}
			mustEmpty(t, s, "after rm and gc")
		})
	}
}

// The same content in many places is one object with one reference per
// layer, however many entries of the layer name it.
func TestReview_Refcount_Accounting(t *testing.T) {
	s := newTestStore(t)
	body := "shared content"
	d := sha([]byte(body))
	l1 := makeTar(t, tarEntry{name: "a", body: body}, tarEntry{name: "b", body: body}, tarEntry{name: "c", typ: tar.TypeLink, link: "a"})
	l2 := makeTar(t, tarEntry{name: "x/a", body: body}, tarEntry{name: "only2", body: "two"})
	l3 := makeTar(t, tarEntry{name: "y", body: body})
	// two layers of one image name it
	if _, err := importLayers(t, s, "one:1", l1, l2); err != nil {
		t.Fatal(err)
	}
	if got := objectRefs(t, s)[d]; got != 2 {
		t.Fatalf("refs after an image of two layers naming it = %d, want 2", got)
	}
	// a second image shares layer l1 and adds l3
	if _, err := importLayers(t, s, "two:1", l1, l3); err != nil {
		t.Fatal(err)
	}
	if got := objectRefs(t, s)[d]; got != 3 {
		t.Fatalf("refs with a shared layer and a third layer = %d, want 3", got)
	}
	checkOK(t, s, "two images")
	if _, err := s.RemoveImage("one:1", false); err != nil {
		t.Fatal(err)
	}
	if got := objectRefs(t, s)[d]; got != 2 {
		t.Fatalf("refs after removing the first image = %d, want 2 (l1 still held by two:1)", got)
	}
	if _, err := os.Stat(s.ObjectPath(sha([]byte("two")))); !os.IsNotExist(err) {
		t.Errorf("object only l2 held survives its image: %v", err)
	}
	_, tree, err := s.ImageTree("two:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b", "c", "y"} {
		e, ok := tree.Lookup(p)
		if !ok {
			t.Fatalf("%s missing", p)
		}
		if _, err := os.Stat(s.ObjectPath(e.Digest)); err != nil {
			t.Errorf("%s: object gone while two:1 holds it: %v", p, err)
		}
	}
	if _, err := s.RemoveImage("two:1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	mustEmpty(t, s, "after removing both")
}

// NewImage on a base, then removing the base: the derived image keeps every
// object of the base's layers.
func TestReview_Refcount_NewImageOnBaseThenRemoveBase(t *testing.T) {
	s := newTestStore(t)
	base, err := importLayers(t, s, "base:1", makeTar(t, tarEntry{name: "etc/os", body: "base os"}, tarEntry{name: "bin/sh", body: "shell"}))
	if err != nil {
		t.Fatal(err)
	}
	derived, err := s.NewImage(context.Background(), NewImageOptions{Base: &base, Names: []string{"derived:1"},
		Layers: []NewLayer{{Open: opener(makeTar(t, tarEntry{name: "app", body: "app"}, tarEntry{name: "bin/.wh.sh"}))}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(derived.Layers) != 2 || derived.Layers[0] != base.Layers[0] {
		t.Fatalf("derived layers %v", derived.Layers)
	}
	if _, err := s.RemoveImage("base:1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	_, tree, err := s.ImageTree("derived:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tree.Lookup("bin/sh"); ok {
		t.Error("bin/sh whited out, still there")
	}
	for _, p := range []string{"etc/os", "app"} {
		e, ok := tree.Lookup(p)
		if !ok {
			t.Fatalf("%s missing", p)
		}
		if _, err := os.Stat(s.ObjectPath(e.Digest)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// bin/sh's object is held by the base layer, which the derived image holds.
	if _, err := os.Stat(s.ObjectPath(sha([]byte("shell")))); err != nil {
		t.Errorf("object of a whited-out file of a held layer removed: %v", err)
	}
	checkOK(t, s, "after removing the base")
}

// ---------------------------------------------------------------------------
// Crash windows, simulated at the exact step

// A crash after the objects are published and before the bbolt transaction
// commits: objects/ holds files no record names, tmp/ holds the staging dir.
func TestReview_Crash_BetweenPublishAndCommit(t *testing.T) {
	s := newTestStore(t)
	keep, err := importLayers(t, s, "keep:1", makeTar(t, tarEntry{name: "k", body: "keep"}))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("B", smallFile+1)
	layer := makeTar(t, tarEntry{name: "k", body: "keep"}, tarEntry{name: "new", body: "new content"}, tarEntry{name: "big", body: big})
	lk, err := s.lock(false)
	if err != nil {
		t.Fatal(err)
	}
	_, st, err := s.ingestLayers(context.Background(), []LayerBlob{{Size: -1, Open: opener(layer)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = st // the process dies here: no commit, no discard
	lk.unlock()
	for _, c := range []string{"new content", big} {
		if _, err := os.Stat(s.ObjectPath(sha([]byte(c)))); err != nil {
			t.Fatalf("published object not in objects/: %v", err)
		}
	}
	r := checkOK(t, s, "after the crash")
	if len(r.Garbage) != 3 { // two objects and the staging dir
		t.Errorf("garbage %v, want two objects and one staging dir", r.Garbage)
	}
	if imgs, _ := s.Images(); len(imgs) != 1 || imgs[0].ID != keep.ID {
		t.Errorf("half an import is visible: %+v", imgs)
	}
	g, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if g.Objects != 2 || g.Staging != 1 {
		t.Errorf("gc %+v, want 2 objects and 1 staging dir", g)
	}
	if _, err := os.Stat(s.ObjectPath(sha([]byte("keep")))); err != nil {
		t.Errorf("gc removed a committed object: %v", err)
	}
	r = checkOK(t, s, "after gc")
	if len(r.Garbage) != 0 {
		t.Errorf("garbage after gc: %v", r.Garbage)
	}
	if _, err := importLayers(t, s, "again:1", layer); err != nil {
		t.Fatalf("import after the crash: %v", err)
	}
}

// A crash in the middle of publish: some objects renamed, some still staged.
func TestReview_Crash_MidPublish(t *testing.T) {
	s := newTestStore(t)
	st, err := s.newStaging(func(digest.Digest) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		st.addSmall([]byte(fmt.Sprintf("object %d", i)))
	}
	if err := st.wait(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for d, name := range st.pending {
		if n == 5 {
			break
		}
		if err := os.Rename(name, s.ObjectPath(d)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	r := checkOK(t, s, "mid-publish")
	if len(r.Garbage) != 6 {
		t.Errorf("garbage %v, want 5 objects and the staging dir", r.Garbage)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	mustEmpty(t, s, "after gc")
}

// A crash after a removal committed and before the object files went.
func TestReview_Crash_BetweenCommitAndObjectRemoval(t *testing.T) {
	s := newTestStore(t)
	if _, err := importLayers(t, s, "gone:1", makeTar(t, tarEntry{name: "a", body: "aaa"}, tarEntry{name: "b", body: strings.Repeat("b", smallFile+5)})); err != nil {
		t.Fatal(err)
	}
	// RemoveImage's transaction, without removeObjects after it.
	var doomed []objectFile
	err := s.update(func(tx *bolt.Tx) error {
		id, err := resolve(tx, "gone:1")
		if err != nil {
			return err
		}
		if err := bucket(tx, bucketRefs).Delete([]byte("gone:1")); err != nil {
			return err
		}
		if err := bucket(tx, bucketImages).Delete([]byte(id)); err != nil {
			return err
		}
		_, doomed, err = sweep(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(doomed) != 2 {
		t.Fatalf("doomed %v", doomed)
	}
	r := checkOK(t, s, "after the crash")
	if len(r.Garbage) != 2 {
		t.Errorf("garbage %v, want the two object files", r.Garbage)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	mustEmpty(t, s, "after gc")
}

// Leftovers in tmp/ of every shape a crash can leave.
func TestReview_Crash_TmpLeftovers(t *testing.T) {
	s := newTestStore(t)
	os.MkdirAll(filepath.Join(s.TmpDir(), "import-1", "sub"), 0o700)
	os.WriteFile(filepath.Join(s.TmpDir(), "import-1", "o1"), []byte("partial"), 0o400)
	os.WriteFile(filepath.Join(s.TmpDir(), "strata-export-9"), []byte("x"), 0o400)
	os.MkdirAll(filepath.Join(s.TmpDir(), "ro"), 0o500) // a read-only dir must not stop GC
	os.WriteFile(filepath.Join(s.TmpDir(), "ro", "x"), nil, 0o400)
	os.Chmod(filepath.Join(s.TmpDir(), "ro"), 0o500)
	r := checkOK(t, s, "with leftovers")
	if len(r.Garbage) != 3 {
		t.Errorf("garbage %v, want 3 entries", r.Garbage)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if left, _ := readDirNames(s.TmpDir()); len(left) != 0 {
		t.Errorf("tmp/ after gc: %v", left)
	}
}

// ---------------------------------------------------------------------------
// The checker against corruption injected into bbolt

// corruptFixture is a store with two images of two layers each, one layer
// shared, and their trees.
func corruptFixture(t *testing.T) (*Store, Image, Image) {
	t.Helper()
	s, err := Open(t.TempDir(), &Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	base := makeTar(t, tarEntry{name: "etc/", typ: tar.TypeDir}, tarEntry{name: "etc/passwd", body: "root:x:0:0"}, tarEntry{name: "bin/sh", body: "shell", mode: 0o755})
	a, err := importLayers(t, s, "a:1", base, makeTar(t, tarEntry{name: "a", body: "layer a"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := importLayers(t, s, "b:1", base, makeTar(t, tarEntry{name: "b", body: "layer b"}))
	if err != nil {
		t.Fatal(err)
	}
	if r := checkOK(t, s, "before corruption"); len(r.Garbage) != 0 {
		t.Fatalf("garbage before corruption: %v", r.Garbage)
	}
	return s, a, b
}

// rawUpdate edits meta.db with a bbolt handle of its own, as another program
// (or a bad disk) would.
func rawUpdate(t *testing.T, s *Store, fn func(r *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(s.dbPath(), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketRoot)) }); err != nil {
		t.Fatal(err)
	}
}

func setEntry(t *testing.T, b *bolt.Bucket, path string, edit func(e *Entry)) error {
	t.Helper()
	k := Key(path)
	v := b.Get(k)
	if v == nil {
		return fmt.Errorf("no entry %q", path)
	}
	e := &Entry{Path: path}
	if err := e.UnmarshalBinary(v); err != nil {
		return err
	}
	edit(e)
	nv, _ := e.MarshalBinary()
	return b.Put(k, nv)
}

func TestReview_Check_DetectsCorruption(t *testing.T) {
	type tc struct {
		name    string
		corrupt func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error
	}
	cases := []tc{
		{name: "ObjectRecordDeleted", corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
			return func(r *bolt.Bucket) error { return r.Bucket(bucketObjects).Delete([]byte(sha([]byte("layer a")))) }
		}},
		{name: "RefcountChanged", corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
			return func(r *bolt.Bucket) error {
				return r.Bucket(bucketObjects).Put([]byte(sha([]byte("shell"))), objectRecord{Size: 5, Refs: 2}.marshal())
			}
		}},
		{name: "ObjectRecordBytesFlipped", corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
			return func(r *bolt.Bucket) error {
				k := []byte(sha([]byte("layer b")))
				v := append([]byte(nil), r.Bucket(bucketObjects).Get(k)...)
				v[0] ^= 0x03
				return r.Bucket(bucketObjects).Put(k, v)
			}
		}},
		{name: "LayerBucketDeleted", corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
			return func(r *bolt.Bucket) error { return r.Bucket(bucketLayers).DeleteBucket([]byte(a.Layers[1])) }
		}},
		{name: "TagToMissingImage", corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
			return func(r *bolt.Bucket) error {
				return r.Bucket(bucketRefs).Put([]byte("ghost:1"), []byte(sha([]byte("ghost"))))
			}
		}},
		{name: "TreeEntryNamesUnknownObject", corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
			return func(r *bolt.Bucket) error {
				return setEntry(t, r.Bucket(bucketTrees).Bucket([]byte(a.ChainID)).Bucket(bucketEnts), "a", func(e *Entry) { e.Digest = sha([]byte("nothing")) })
			}
		}},
		{name: "TreeEntryModeFlipped",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					return setEntry(t, r.Bucket(bucketTrees).Bucket([]byte(a.ChainID)).Bucket(bucketEnts), "bin/sh", func(e *Entry) { e.Mode = 0o4777 })
				}
			}},
		{name: "TreeEntryPointsAtOtherObject",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					return setEntry(t, r.Bucket(bucketTrees).Bucket([]byte(a.ChainID)).Bucket(bucketEnts), "etc/passwd", func(e *Entry) {
						e.Digest, e.Size = sha([]byte("layer b")), 7
					})
				}
			}},
		{name: "LayerEntryModeFlipped",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					return setEntry(t, r.Bucket(bucketLayers).Bucket([]byte(a.Layers[0])).Bucket(bucketEnts), "bin/sh", func(e *Entry) { e.Mode = 0o4777; e.UID = 0 })
				}
			}},
		{name: "TarSplitHeaderByteFlipped",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					lb := r.Bucket(bucketLayers).Bucket([]byte(a.Layers[1]))
					dec, _ := zstd.NewReader(nil)
					defer dec.Close()
					raw, err := dec.DecodeAll(lb.Get(keyTarSplit), nil)
					if err != nil {
						return err
					}
					raw = append([]byte(nil), raw...)
					// 'L', uvarint length (2 bytes for a 512+ byte literal), then the
					// first header: flip a byte of its mtime field.
					raw[3+136+3] ^= 0x01
					enc, _ := zstd.NewWriter(nil)
					defer enc.Close()
					return lb.Put(keyTarSplit, enc.EncodeAll(raw, nil))
				}
			}},
		{name: "ImageLayersDisagreeWithConfig",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					ib := r.Bucket(bucketImages)
					var rec imageRecord
					if err := json.Unmarshal(ib.Get([]byte(a.ID)), &rec); err != nil {
						return err
					}
					rec.Layers = []digest.Digest{a.Layers[0], b.Layers[1]} // a:1 now shows b's top layer
					rec.ChainID = identity.ChainID(rec.Layers)
					v, _ := json.Marshal(rec)
					return ib.Put([]byte(a.ID), v)
				}
			}},
		{name: "TreeUnderWrongChainID",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					// swap the two trees' entries: each image mounts the other's files
					tb := r.Bucket(bucketTrees)
					ea, eb := tb.Bucket([]byte(a.ChainID)).Bucket(bucketEnts), tb.Bucket([]byte(b.ChainID)).Bucket(bucketEnts)
					copyA, copyB := map[string][]byte{}, map[string][]byte{}
					ea.ForEach(func(k, v []byte) error { copyA[string(k)] = append([]byte(nil), v...); return nil })
					eb.ForEach(func(k, v []byte) error { copyB[string(k)] = append([]byte(nil), v...); return nil })
					for _, x := range []struct {
						parent *bolt.Bucket
						key    digest.Digest
						from   map[string][]byte
					}{{tb.Bucket([]byte(a.ChainID)), a.ChainID, copyB}, {tb.Bucket([]byte(b.ChainID)), b.ChainID, copyA}} {
						if err := x.parent.DeleteBucket(bucketEnts); err != nil {
							return err
						}
						nb, err := x.parent.CreateBucket(bucketEnts)
						if err != nil {
							return err
						}
						for k, v := range x.from {
							if err := nb.Put([]byte(k), v); err != nil {
								return err
							}
						}
					}
					return nil
				}
			}},
		{name: "OrphanObjectRecordWithZeroRefs",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				d := sha([]byte("orphan"))
				if err := os.WriteFile(s.ObjectPath(d), []byte("orphan"), 0o400); err != nil {
					t.Fatal(err)
				}
				return func(r *bolt.Bucket) error {
					return r.Bucket(bucketObjects).Put([]byte(d), objectRecord{Size: 6, Refs: 0}.marshal())
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, a, b := corruptFixture(t)
			rawUpdate(t, s, c.corrupt(t, s, a, b))
			r, err := s.Check(true)
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			if r.OK() {
				t.Fatalf("corruption %s not reported (garbage: %v)", c.name, r.Garbage)
			}
			t.Logf("reported: %v", r.Problems)
		})
	}
}

// The tar split must give back what was imported; with a header byte
// flipped in bbolt, LayerTar no longer hashes to the diffID. This is what
// TarSplitHeaderByteFlipped above hides from Check.
func TestReview_Check_TarSplitCorruptionBreaksLayerTar(t *testing.T) {
	s, a, _ := corruptFixture(t)
	rawUpdate(t, s, func(r *bolt.Bucket) error {
		lb := r.Bucket(bucketLayers).Bucket([]byte(a.Layers[1]))
		dec, _ := zstd.NewReader(nil)
		defer dec.Close()
		raw, _ := dec.DecodeAll(lb.Get(keyTarSplit), nil)
		raw = append([]byte(nil), raw...)
		raw[3+136+3] ^= 0x01
		enc, _ := zstd.NewWriter(nil)
		defer enc.Close()
		return lb.Put(keyTarSplit, enc.EncodeAll(raw, nil))
	})
	rc, err := s.LayerTar(a.Layers[1])
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	io.Copy(h, rc)
	rc.Close()
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got == string(a.Layers[1]) {
		t.Fatal("the flipped byte did not reach LayerTar; the corruption case above tests nothing")
	}
}

// ---------------------------------------------------------------------------
// Untrusted input: what a layer makes the importer hold in memory

// Bytes of a layer that are not file contents (whiteout bodies, data after
// the end-of-archive marker, sparse file data) are buffered whole in memory
// by the tar splitter and stored as one bbolt value. A small compressed
// blob can make the importer allocate without bound.
func TestReview_Ingest_NonContentBytesBounded(t *testing.T) {
	const body = 128 << 20
	zeros := make([]byte, 1<<20)
	memCase := func(t *testing.T, raw []byte) {
		blob := gz(t, raw)
		t.Logf("blob: %d bytes compressed, %d uncompressed", len(blob), len(raw))
		raw = nil
		s, err := Open(t.TempDir(), &Options{MaxFileSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = importLayers(t, s, "x:1", blob)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Logf("import refused: %v", err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
			t.Errorf("importing a %d-byte blob allocated %d MiB", len(blob), alloc>>20)
		}
	}
	t.Run("WhiteoutBody", func(t *testing.T) {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		tw.WriteHeader(&tar.Header{Name: "d/.wh.x", Typeflag: tar.TypeReg, Size: body, Mode: 0o644})
		for i := 0; i < body>>20; i++ {
			tw.Write(zeros)
		}
		tw.Close()
		memCase(t, raw.Bytes())
	})
	t.Run("AfterEndMarker", func(t *testing.T) {
		raw := makeTar(t, tarEntry{name: "f", body: "f"})
		for i := 0; i < body>>20; i++ {
			raw = append(raw, zeros...)
		}
		memCase(t, raw)
	})
	// A sparse file's data is its object's; the tar split names ranges of
	// it, in every sparse format GNU tar writes, and still gives back the
	// imported bytes.
	for _, format := range []struct{ name, format, version string }{
		{"gnu", "gnu", ""}, {"oldgnu", "oldgnu", ""},
		{"pax0.0", "posix", "0.0"}, {"pax0.1", "posix", "0.1"}, {"pax1.0", "posix", "1.0"},
	} {
		t.Run("SparseDataStoredOnce/"+format.name, func(t *testing.T) {
			if _, err := exec.LookPath("tar"); err != nil {
				t.Skip("no GNU tar")
			}
			dir := t.TempDir()
			f, err := os.Create(filepath.Join(dir, "disk.img"))
			if err != nil {
				t.Fatal(err)
			}
			// 32 runs of data with holes between them: more fragments than
			// a GNU header holds (extension blocks) and a 1.0 map of more
			// than one block.
			data := make([]byte, 16<<20)
			rand.New(rand.NewSource(1)).Read(data)
			const run = 512 << 10
			for i := 0; i < len(data)/run; i++ {
				f.WriteAt(data[i*run:(i+1)*run], int64(i)*(2<<20))
			}
			f.Truncate(80 << 20) // and a hole at the end
			f.Close()
			args := []string{"-C", dir, "--sparse", "--format=" + format.format, "-cf", "-"}
			if format.version != "" {
				args = append(args, "--sparse-version="+format.version)
			}
			raw, err := exec.Command("tar", append(args, "disk.img")...).Output()
			if err != nil {
				t.Fatal(err)
			}
			s := newTestStore(t)
			img, err := importLayers(t, s, "", raw)
			if err != nil {
				t.Fatal(err)
			}
			var split int
			s.view(func(tx *bolt.Tx) error {
				split = len(bucket(tx, bucketLayers).Bucket([]byte(img.Layers[0])).Get(keyTarSplit))
				return nil
			})
			if split == 0 || split > 64<<10 {
				t.Errorf("the tar split of one sparse file is %d bytes, want a few hundred: its %d MiB of data belong to its object", split, len(data)>>20)
			}
			rc, err := s.LayerTar(img.Layers[0])
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("LayerTar gave %d bytes, differing from the %d imported", len(got), len(raw))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Header fields that do not fit the entry

// A uid, gid or mtime the entry cannot hold must be refused, not wrapped:
// uid 2^32 (out of range for Linux) silently becomes root.
func TestReview_Ingest_HeaderFieldsOutOfRange(t *testing.T) {
	cases := map[string]*tar.Header{
		"UID2^32":  {Name: "f", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1 << 32, ModTime: time.Unix(1700000000, 0)},
		"GID2^32":  {Name: "f", Typeflag: tar.TypeReg, Mode: 0o2755, Gid: 1<<32 + 5, ModTime: time.Unix(1700000000, 0)},
		"Year2300": {Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			h.Format = tar.FormatPAX
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Close()
			s := newTestStore(t)
			img, err := importLayers(t, s, "", buf.Bytes())
			if err != nil {
				return // refused: fine
			}
			_, tree, err := s.ImageTree(string(img.ID))
			if err != nil {
				t.Fatal(err)
			}
			e, _ := tree.Lookup("f")
			if int64(e.UID) != int64(h.Uid) || int64(e.GID) != int64(h.Gid) {
				t.Errorf("owner %d:%d, header says %d:%d", e.UID, e.GID, h.Uid, h.Gid)
			}
			// A time int64 nanoseconds cannot hold is clamped to the
			// nearest one they can, never wrapped.
			want := h.ModTime
			if want.After(time.Unix(0, math.MaxInt64)) {
				want = time.Unix(0, math.MaxInt64)
			}
			if !time.Unix(0, e.Mtime).Equal(want) {
				t.Errorf("mtime %s, header says %s (want %s)", time.Unix(0, e.Mtime).UTC(), h.ModTime, want.UTC())
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Paths

// Names that clean to a place inside the layer are stored clean; names that
// climb out are refused; no stored path is unclean.
func TestReview_Ingest_PathCleaning(t *testing.T) {
	ok := map[string]string{
		"a//b":         "a/b",
		"./a/./b/":     "a/b",
		"/abs/x":       "abs/x",
		"a/../b":       "b",
		"a/b/../../c":  "c",
		"../":          "", // climbs out: refused below
		"x/..":         "",
		"///":          "",
		"a/.wh.b/c":    "a/.wh.b/c",
		"./":           "",
		"a/b/c/../../": "a",
	}
	for in, want := range ok {
		got, err := cleanPath(in)
		if in == "../" {
			if err == nil {
				t.Errorf("cleanPath(%q) = %q, want refusal", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"..", "../x", "a/../../x", "/../x", "a/b/../../../x", "a\x00b", "./.."} {
		if got, err := cleanPath(bad); err == nil {
			t.Errorf("cleanPath(%q) = %q, want an error", bad, got)
		}
	}
	// Over the whole import: store and tree hold only clean paths, and no
	// file appears outside the store root.
	outside := t.TempDir()
	s := newTestStore(t)
	layer := makeTar(t,
		tarEntry{name: "./", typ: tar.TypeDir, mode: 0o700},
		tarEntry{name: "a//b/", typ: tar.TypeDir},
		tarEntry{name: "a//b//c", body: "c"},
		tarEntry{name: "/abs", body: "abs"},
		tarEntry{name: "q/../r", body: "r"},
		tarEntry{name: "l", typ: tar.TypeLink, link: "/a/b/../b/c"},
		tarEntry{name: "s", typ: tar.TypeSymlink, link: "../../../../" + outside + "/x"},
	)
	img, err := importLayers(t, s, "", layer)
	if err != nil {
		t.Fatal(err)
	}
	_, tree, err := s.ImageTree(string(img.ID))
	if err != nil {
		t.Fatal(err)
	}
	tree.Walk(func(e *Entry) error {
		if c, err := cleanPath(e.Path); err != nil || c != e.Path {
			t.Errorf("unclean path %q in tree", e.Path)
		}
		return nil
	})
	root, _ := tree.Lookup("")
	if root.Mode != 0o700 {
		t.Errorf("root mode %o, want the layer's 0700", root.Mode)
	}
	l, _ := tree.Lookup("l")
	c, _ := tree.Lookup("a/b/c")
	if l == nil || c == nil || l.Ino != c.Ino || c.Nlink != 2 {
		t.Errorf("hard link through an absolute, dotted name: %+v %+v", l, c)
	}
	if names, _ := readDirNames(outside); len(names) != 0 {
		t.Errorf("import wrote outside the store: %v", names)
	}
}

// Hard links must share an inode only with what tar -x would link them to.
// The layer-level cases umoci checks in review_ext_test.go; here the
// invariant every tree must keep: one inode, one type, one content.
func TestReview_Tree_InodeConsistency(t *testing.T) {
	cases := map[string][]tarEntry{
		"TargetRewritten": {{name: "a", body: "old"}, {name: "b", typ: tar.TypeLink, link: "a"}, {name: "a", body: "new"}},
		"TargetBecomesDir": {{name: "a", body: "old"}, {name: "b", typ: tar.TypeLink, link: "a"},
			{name: "a/", typ: tar.TypeDir}, {name: "a/in", body: "in"}},
		"TargetBecomesSymlink": {{name: "a", body: "old"}, {name: "b", typ: tar.TypeLink, link: "a"}, {name: "a", typ: tar.TypeSymlink, link: "b"}},
	}
	for name, ents := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := Open(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			img, err := importLayers(t, s, "", makeTar(t, ents...))
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			checkOK(t, s, "after import")
			_, tree, err := s.ImageTree(string(img.ID))
			if err != nil {
				t.Fatal(err)
			}
			byIno := map[uint64]*Entry{}
			tree.Walk(func(e *Entry) error {
				if o, ok := byIno[e.Ino]; ok && (o.Type != e.Type || o.Digest != e.Digest || o.Mode != e.Mode) {
					t.Errorf("inode %d: %q (%s %s) and %q (%s %s)", e.Ino, o.Path, o.Type, o.Digest, e.Path, e.Type, e.Digest)
				}
				byIno[e.Ino] = e
				return nil
			})
			b, _ := tree.Lookup("b")
			if b == nil || b.Digest != sha([]byte("old")) || b.Nlink != 1 {
				t.Errorf("b = %+v, want the old content with one link, as tar -x leaves it", b)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Leases whose ID names a place outside mounts/

func TestReview_Lease_MountIDEscapes(t *testing.T) {
	for _, c := range []struct{ name, id string }{{"DotDotThenGC", ".."}, {"DotThenGC", "."}, {"RemoveMountDotDot", ".."}} {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "store")
			s, err := Open(root, nil)
			if err != nil {
				t.Fatal(err)
			}
			img, err := importLayers(t, s, "victim:1", makeTar(t, tarEntry{name: "f", body: "precious"}))
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(s.MountDir("other"), 0o700)
			err = s.AddMount(MountRecord{ID: c.id, Image: img.ID, Layers: img.Layers, ChainID: img.ChainID, Dir: "/mnt/x", PID: -1})
			if err == nil {
				if strings.HasPrefix(c.name, "RemoveMount") {
					s.RemoveMount(c.id)
				} else {
					s.GC()
				}
			} else if strings.HasPrefix(c.name, "RemoveMount") {
				s.RemoveMount(c.id)
			}
			if _, err := os.Stat(filepath.Join(root, "meta.db")); err != nil {
				t.Fatalf("lease %q deleted the store: %v", c.id, err)
			}
			if _, err := os.Stat(s.ObjectPath(sha([]byte("precious")))); err != nil {
				t.Fatalf("lease %q deleted objects: %v", c.id, err)
			}
			if _, err := os.Stat(s.MountDir("other")); err != nil && c.id == "." {
				t.Fatalf("lease %q deleted other mounts' directories: %v", c.id, err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Verification of what is skipped

// A layer already stored is not read again; the blob offered for it is then
// never verified, and the manifest naming it is stored as if it had been.
func TestReview_Ingest_KnownLayerBlobNotVerified(t *testing.T) {
	s := newTestStore(t)
	raw := makeTar(t, tarEntry{name: "a", body: "a"})
	good := gz(t, raw)
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}`, sha(raw)))
	if _, err := s.AddImage(context.Background(), &ImageSource{ConfigRaw: cfg, Names: []string{"good:1"},
		Layers: []LayerBlob{{Digest: sha(good), Size: int64(len(good)), Open: opener(good)}}}, nil); err != nil {
		t.Fatal(err)
	}
	// Same config (so same diffID), another manifest, and a blob that is not
	// what its digest says.
	bad := []byte("this is not a gzip of anything")
	cfg2 := append([]byte(nil), cfg...)
	cfg2 = append(cfg2[:len(cfg2)-1], []byte(`,"config":{"Env":["X=1"]}}`)...)
	_, err := s.AddImage(context.Background(), &ImageSource{ConfigRaw: cfg2, Names: []string{"bad:1"},
		Layers: []LayerBlob{{Digest: sha([]byte("claimed")), Size: int64(len(bad)), Open: opener(bad)}}}, nil)
	if err == nil {
		t.Fatal("a blob that does not hash to its digest was accepted because its diffID was already stored")
	}
	if imgs, _ := s.Images(); len(imgs) != 1 {
		t.Errorf("%d images after the refused import", len(imgs))
	}
}

// Random layers with whiteouts, opaques, replacements and hard links: the
// stored tree of every prefix chain equals BuildTree of the same layers, and
// building from a stored ancestor gives what building from scratch gives.
func TestReview_Tree_IncrementalEqualsScratch(t *testing.T) {
	seed := time.Now().UnixNano()
	if v := os.Getenv("STRATA_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	t.Logf("seed %d (STRATA_SEED replays)", seed)
	rnd := rand.New(rand.NewSource(seed))
	names := []string{"a", "b", "d", "d/x", "d/y", "d/e", "d/e/z", "f"}
	var layers [][]byte
	for i := 0; i < 6; i++ {
		var ents []tarEntry
		for _, n := range names {
			switch rnd.Intn(7) {
			case 0:
				ents = append(ents, tarEntry{name: n, body: fmt.Sprintf("%s@%d", n, i)})
			case 1:
				ents = append(ents, tarEntry{name: n + "/", typ: tar.TypeDir, mode: int64(0o700 + rnd.Intn(0o77))})
			case 2:
				ents = append(ents, tarEntry{name: parentOfName(n) + ".wh." + baseOfName(n)})
			case 3:
				ents = append(ents, tarEntry{name: n + "/" + OpaqueName})
			case 4:
				ents = append(ents, tarEntry{name: n, typ: tar.TypeSymlink, link: "somewhere"})
			}
		}
		ents = append(ents, tarEntry{name: fmt.Sprintf("h%d", i), body: "h"}, tarEntry{name: fmt.Sprintf("hl%d", i), typ: tar.TypeLink, link: fmt.Sprintf("h%d", i)})
		layers = append(layers, makeTar(t, ents...))
	}
	s := newTestStore(t)
	for n := 1; n <= len(layers); n++ {
		img, err := importLayers(t, s, fmt.Sprintf("p:%d", n), layers[:n]...)
		if err != nil {
			t.Fatalf("prefix %d: %v", n, err)
		}
		_, stored, err := s.ImageTree(string(img.ID))
		if err != nil {
			t.Fatal(err)
		}
		var ls [][]*Entry
		for _, d := range img.Layers {
			es, err := s.LayerEntries(d)
			if err != nil {
				t.Fatal(err)
			}
			ls = append(ls, es)
		}
		scratch, err := BuildTree(img.ChainID, ls...)
		if err != nil {
			t.Fatal(err)
		}
		if diff := treeDiff(stored, scratch); diff != "" {
			t.Fatalf("prefix %d: stored tree (built on the stored ancestor) differs from scratch: %s", n, diff)
		}
	}
}

func parentOfName(n string) string {
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		return n[:i+1]
	}
	return ""
}

func baseOfName(n string) string { return n[strings.LastIndexByte(n, '/')+1:] }

func treeDiff(a, b *Tree) string {
	var out []string
	for p, ea := range a.entries {
		eb, ok := b.entries[p]
		if !ok {
			out = append(out, "only in stored: "+p)
			continue
		}
		va, _ := ea.MarshalBinary()
		vb, _ := eb.MarshalBinary()
		if !bytes.Equal(va, vb) {
			out = append(out, fmt.Sprintf("%s: %+v != %+v", p, *ea, *eb))
		}
	}
	for p := range b.entries {
		if _, ok := a.entries[p]; !ok {
			out = append(out, "only in scratch: "+p)
		}
	}
	return strings.Join(out, "; ")
}

// An import cancelled while staging leaves nothing behind; one that fails at
// commit leaves only garbage that Check allows and GC removes.
func TestReview_Ingest_FailedImportsLeaveOnlyGarbage(t *testing.T) {
	s := newTestStore(t)
	if _, err := importLayers(t, s, "keep:1", makeTar(t, tarEntry{name: "k", body: "keep"})); err != nil {
		t.Fatal(err)
	}
	t.Run("Cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		layer := makeTar(t, tarEntry{name: "a", body: "aaaa"}, tarEntry{name: "b", body: strings.Repeat("b", smallFile+1)}, tarEntry{name: "c", body: "cccc"})
		open := func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(bytes.NewReader(layer[:len(layer)/2]), readFn(func([]byte) (int, error) {
				cancel()
				return 0, io.EOF
			}), bytes.NewReader(layer[len(layer)/2:]))), nil
		}
		_, err := s.NewImage(ctx, NewImageOptions{Layers: []NewLayer{{Open: open}}, Names: []string{"cancel:1"}})
		if err == nil {
			t.Fatal("cancelled import succeeded")
		}
		r := checkOK(t, s, "after cancel")
		if len(r.Garbage) != 0 {
			t.Errorf("garbage after a cancelled import: %v", r.Garbage)
		}
	})
	t.Run("CommitFails", func(t *testing.T) {
		// an empty name is refused by bbolt inside the commit, after publish
		_, err := s.NewImage(context.Background(), NewImageOptions{Names: []string{""},
			Layers: []NewLayer{{Open: opener(makeTar(t, tarEntry{name: "z", body: "zzzz"}))}}})
		if err == nil {
			t.Fatal("import with an empty name succeeded")
		}
		r := checkOK(t, s, "after a failed commit")
		if imgs, _ := s.Images(); len(imgs) != 1 {
			t.Errorf("%d images after a failed commit", len(imgs))
		}
		if _, err := s.GC(); err != nil {
			t.Fatal(err)
		}
		if r = checkOK(t, s, "after gc"); len(r.Garbage) != 0 {
			t.Errorf("garbage after gc: %v", r.Garbage)
		}
		if _, err := os.Stat(s.ObjectPath(sha([]byte("zzzz")))); !os.IsNotExist(err) {
			t.Errorf("object of the failed import after gc: %v", err)
		}
	})
}

type readFn func([]byte) (int, error)

func (f readFn) Read(p []byte) (int, error) { return f(p) }
