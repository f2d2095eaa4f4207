package layerstore

// The checker against corruption injected into bbolt values and object files.

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	bolt "go.etcd.io/bbolt"
)

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

// asOurs stamps the raw transaction of r as one that kept the holders
// index (after err, its edit): a wrong index this code left, not one
// behind another writer's commit.
func asOurs(r *bolt.Bucket, err error) error {
	if err != nil {
		return err
	}
	return r.Put(keyIndexedTx, []byte(strconv.Itoa(r.Tx().ID())))
}

// setTreeEntry rewrites the tree file of chain with one entry edited: a new,
// well-formed tree file named by its digest, and the record naming it.
func setTreeEntry(t *testing.T, s *Store, r *bolt.Bucket, chain digest.Digest, path string, edit func(e *Entry)) error {
	t.Helper()
	b := r.Bucket(bucketTrees).Bucket([]byte(chain))
	var rec treeRecord
	if err := json.Unmarshal(b.Get(keyMeta), &rec); err != nil {
		return err
	}
	tr, err := s.mapTree(chain, rec.File, rec.Size)
	if err != nil {
		return err
	}
	defer tr.Close()
	all := map[string]*Entry{}
	kids := map[string][]*Entry{}
	tr.Walk(func(e *Entry) error {
		all[e.Path] = e
		if e.Path != "" {
			kids[parentOf(e.Path)] = append(kids[parentOf(e.Path)], e)
		}
		return nil
	})
	e, ok := all[path]
	if !ok {
		return fmt.Errorf("no entry %q", path)
	}
	edit(e)
	data := encodeTree(all, kids, tr.NextIno)
	d, err := s.writeTreeFile(data)
	if err != nil {
		return err
	}
	rec.File, rec.Size = d, int64(len(data))
	v, _ := json.Marshal(rec)
	return b.Put(keyMeta, v)
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

func TestStore_Check_DetectsInjectedCorruption(t *testing.T) {
	type tc struct {
		name    string
		corrupt func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error
	}
	cases := []tc{
		// The holders index against the records: a hold missing would let
		// a removal delete what b holds; one too many keeps garbage.
		{name: "HolderMissing", corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
			return func(r *bolt.Bucket) error {
				return asOurs(r, r.Bucket(bucketHolders).Delete(holderKey(holdLayer, b.Layers[0], imageHolder(b.ID))))
			}
		}},
		{name: "HolderExtra", corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
			return func(r *bolt.Bucket) error {
				return asOurs(r, r.Bucket(bucketHolders).Put(holderKey(holdLayer, a.Layers[1], mountHolder("gone")), []byte{}))
			}
		}},
		{name: "TreeFileHolderMissing", corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
			return func(r *bolt.Bucket) error {
				var rec treeRecord
				json.Unmarshal(r.Bucket(bucketTrees).Bucket([]byte(a.ChainID)).Get(keyMeta), &rec)
				return asOurs(r, r.Bucket(bucketHolders).Delete(holderKey(holdFile, rec.File, treeHolder(a.ChainID))))
			}
		}},
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
				return setTreeEntry(t, s, r, a.ChainID, "a", func(e *Entry) { e.Digest = sha([]byte("nothing")) })
			}
		}},
		{name: "TreeEntryModeFlipped",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					return setTreeEntry(t, s, r, a.ChainID, "bin/sh", func(e *Entry) { e.Mode = 0o4777 })
				}
			}},
		{name: "TreeEntryPointsAtOtherObject",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					return setTreeEntry(t, s, r, a.ChainID, "etc/passwd", func(e *Entry) {
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
					// swap the two trees' files: each image mounts the other's files
					tb := r.Bucket(bucketTrees)
					ba, bb := tb.Bucket([]byte(a.ChainID)), tb.Bucket([]byte(b.ChainID))
					va, vb := append([]byte(nil), ba.Get(keyMeta)...), append([]byte(nil), bb.Get(keyMeta)...)
					var ra, rb treeRecord
					json.Unmarshal(va, &ra)
					json.Unmarshal(vb, &rb)
					ra.File, rb.File, ra.Size, rb.Size = rb.File, ra.File, rb.Size, ra.Size
					ra.Entries, rb.Entries, ra.NextIno, rb.NextIno = rb.Entries, ra.Entries, rb.NextIno, ra.NextIno
					va, _ = json.Marshal(ra)
					vb, _ = json.Marshal(rb)
					return errors.Join(ba.Put(keyMeta, va), bb.Put(keyMeta, vb))
				}
			}},
		{name: "TreeFileMissing",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					rec, err := getTreeRecord(r.Tx(), a.ChainID)
					if err != nil {
						return err
					}
					return os.Remove(s.TreePath(rec.File))
				}
			}},
		{name: "TreeFileByteFlipped",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					rec, err := getTreeRecord(r.Tx(), a.ChainID)
					if err != nil {
						return err
					}
					p := s.TreePath(rec.File)
					data, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					data[len(data)-3] ^= 0x20 // in the string table: a name, a link or a digest
					os.Chmod(p, 0o600)
					return os.WriteFile(p, data, 0o400)
				}
			}},
		{name: "TreeFileTruncated",
			corrupt: func(t *testing.T, s *Store, a, b Image) func(r *bolt.Bucket) error {
				return func(r *bolt.Bucket) error {
					rec, err := getTreeRecord(r.Tx(), a.ChainID)
					if err != nil {
						return err
					}
					return os.Truncate(s.TreePath(rec.File), rec.Size/2)
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
func TestStore_Check_TarSplitCorruption_FailsLayerTar(t *testing.T) {
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

func TestStore_Check_FindsCorruption(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := importLayers(t, s, "k:1", makeTar(t, tarEntry{name: "a", body: "abc"})); err != nil {
		t.Fatal(err)
	}
	p := s.ObjectPath(sha([]byte("abc")))
	os.Chmod(p, 0o600)
	os.WriteFile(p, []byte("xyz"), 0o600)
	r, err := s.Check(false)
	if err != nil || !r.OK() {
		t.Fatalf("without --contents a same-size change is invisible: %+v", r)
	}
	r, _ = s.Check(true)
	if r.OK() || !strings.Contains(errors.Join(r.Problems...).Error(), "hashes to") {
		t.Fatalf("check --contents: %v", r.Problems)
	}
	for _, p := range r.Problems {
		if !errors.Is(p, ErrCorrupt) {
			t.Errorf("problem %q does not wrap ErrCorrupt", p)
		}
	}
	os.Remove(p)
	r, _ = s.Check(false)
	if r.OK() {
		t.Fatal("missing object not reported")
	}
}

// MaxFileSize limits what an import takes in, not what the store holds:
// a layer stored with a larger file (by a store opened without the limit)
// is no problem for the check of the store opened with it.
func TestStore_Check_MaxFileSizeIsNotAProblem(t *testing.T) {
	root := t.TempDir()
	s := openChecked(t, root, nil)
	if _, err := importLayers(t, s, "big:1", gz(t, makeTar(t, tarEntry{name: "big", body: strings.Repeat("x", 4096)}))); err != nil {
		t.Fatal(err)
	}
	limited := openChecked(t, root, &Options{MaxFileSize: 1024})
	if _, err := importLayers(t, limited, "big:2", gz(t, makeTar(t, tarEntry{name: "big2", body: strings.Repeat("y", 4096)}))); !errors.Is(err, ErrOverLimit) || !errors.Is(err, ErrInvalid) {
		t.Errorf("import over MaxFileSize: %v, want ErrOverLimit and ErrInvalid", err)
	}
	checkOK(t, limited, "check of the store opened with MaxFileSize")
}
