package layerstore

// Removal: what removing an image frees and keeps, and a crash between its
// commit and the deletion of the object files.

import (
	"context"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// NewImage on a base, then removing the base: the derived image keeps every
// object of the base's layers.
func TestStore_RemoveImage_BaseOfNewImage_KeepsSharedObjects(t *testing.T) {
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

// A crash after a removal committed and before the object files went.
func TestStore_RemoveImage_CrashBeforeFilesGo_LeavesGarbage(t *testing.T) {
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
		if err := deleteRef(tx, "gone:1"); err != nil {
			return err
		}
		core, err := getImageCore(tx, id)
		if err != nil {
			return err
		}
		if err := deleteImage(tx, core); err != nil {
			return err
		}
		_, doomed, err = sweepReleased(tx, core.Layers, core.ChainID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(doomed) != 3 {
		t.Fatalf("doomed %v, want two objects and the tree file", doomed)
	}
	r := checkOK(t, s, "after the crash")
	if len(r.Garbage) != 3 {
		t.Errorf("garbage %v, want the two object files and the tree file", r.Garbage)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	mustEmpty(t, s, "after gc")
}

// TestStore_Open_MigratesHolders: a store of schema 1 (no holders index,
// as every strata before it made) or 2 (an index without the names of
// images) gets the whole index on open, in one transaction, the same index
// the commands kept in this one; check finds it clean, removing one of two
// images that share a layer keeps that layer for the other, and an image's
// tags are read from the index. A store of a newer schema is refused.
func TestStore_Open_MigratesHolders(t *testing.T) {
	for _, from := range []string{"1", "2"} {
		t.Run("schema="+from, func(t *testing.T) {
			root := t.TempDir()
			s := openChecked(t, root, &Options{LockTimeout: 5 * time.Second})
			shared := makeTar(t, tarEntry{name: "etc/os", body: "shared"})
			a, err := importLayers(t, s, "a:1", shared, makeTar(t, tarEntry{name: "a", body: "a"}))
			if err != nil {
				t.Fatal(err)
			}
			b, err := importLayers(t, s, "b:1", shared, makeTar(t, tarEntry{name: "b", body: "b"}))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Tag("b:1", "b:2"); err != nil {
				t.Fatal(err)
			}
			if err := s.CachePut("step", b.ID); err != nil {
				t.Fatal(err)
			}
			if err := s.AddMountDir(MountRecord{ID: "m1", Image: a.ID, Dir: "/nowhere", Keep: true}, "upper"); err != nil {
				t.Fatal(err)
			}
			index := func() map[string]bool {
				out := map[string]bool{}
				s.view(func(tx *bolt.Tx) error {
					return bucket(tx, bucketHolders).ForEach(func(k, _ []byte) error { out[string(k)] = true; return nil })
				})
				return out
			}
			kept := index()
			if len(kept) != 4+3+2+2+3+1 { // layers and trees of a, b and m1; 2 tree files; 3 tags, 1 cache key
				t.Errorf("index of %d keys: %v", len(kept), kept)
			}
			rawUpdate(t, s, func(r *bolt.Bucket) error {
				if from == "1" {
					if err := r.Delete(keySchema); err != nil {
						return err
					}
					return r.DeleteBucket(bucketHolders)
				}
				hb := r.Bucket(bucketHolders)
				for k := range kept {
					if k[0] == holdName {
						if err := hb.Delete([]byte(k)); err != nil {
							return err
						}
					}
				}
				return r.Put(keySchema, []byte(from))
			})
			s2 := openChecked(t, root, &Options{LockTimeout: 5 * time.Second})
			if got := index(); !maps.Equal(got, kept) {
				t.Errorf("migrated index %v, want %v", got, kept)
			}
			checkOK(t, s2, "after the migration")
			if img, err := s2.ResolveImage("b:1"); err != nil || !slices.Equal(img.RepoTags, []string{"b:1", "b:2"}) {
				t.Errorf("tags of b after the migration: %v %v", img.RepoTags, err)
			}
			if err := s2.RemoveMount("m1"); err != nil {
				t.Fatal(err)
			}
			rep, err := s2.RemoveImage("a:1", false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rep.Deleted, []digest.Digest{a.ID, a.Layers[1]}) {
				t.Errorf("deleted %v, want image %s and its own layer %s", rep.Deleted, a.ID, a.Layers[1])
			}
			if _, err := s2.Layer(a.Layers[0]); err != nil {
				t.Errorf("shared layer: %v", err)
			}
			rawUpdate(t, s, func(r *bolt.Bucket) error { return r.Put(keySchema, []byte("4")) })
			if _, err := Open(root, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "schema 4") {
				t.Errorf("open of a schema 4 store: %v, want ErrInvalid naming it", err)
			}
			rawUpdate(t, s, func(r *bolt.Bucket) error { return r.Put(keySchema, []byte("3")) })
			if _, err := s2.GC(); err != nil { // after the raw commit, rebuilds the index
				t.Fatal(err)
			}
		})
	}
}

// A writer that does not keep the holders index (a strata from before it,
// still running after an upgrade) commits an image without its holder
// keys: the next transaction of this code rebuilds the index before it
// trusts it, so removing another image does not take the shared layer.
func TestStore_HoldersRebuiltAfterAnotherWriter(t *testing.T) {
	root := t.TempDir()
	s := openChecked(t, root, &Options{LockTimeout: 5 * time.Second})
	shared := makeTar(t, tarEntry{name: "etc/os", body: "shared"})
	if _, err := importLayers(t, s, "a:1", shared, makeTar(t, tarEntry{name: "a", body: "a"})); err != nil {
		t.Fatal(err)
	}
	b, err := importLayers(t, s, "b:1", shared, makeTar(t, tarEntry{name: "b", body: "b"}))
	if err != nil {
		t.Fatal(err)
	}
	// The other writer's commit: b's holder keys are not there.
	rawUpdate(t, s, func(r *bolt.Bucket) error {
		hb := r.Bucket(bucketHolders)
		var drop [][]byte
		hb.ForEach(func(k, _ []byte) error {
			if strings.Contains(string(k), string(b.ID)) {
				drop = append(drop, slices.Clone(k))
			}
			return nil
		})
		if len(drop) == 0 {
			t.Fatal("no holder keys name image b")
		}
		for _, k := range drop {
			if err := hb.Delete(k); err != nil {
				return err
			}
		}
		// And a tag and a build cache entry of b, which the index does
		// not name either.
		if err := r.Bucket(bucketRefs).Put([]byte("b:2"), []byte(b.ID)); err != nil {
			return err
		}
		return r.Bucket(bucketCache).Put([]byte("step"), []byte(b.ID))
	})
	// Reads before the next write find the records, not the index.
	wantTags := []string{"b:1", "b:2"}
	if img, err := s.ResolveImage("b:1"); err != nil || !slices.Equal(img.RepoTags, wantTags) {
		t.Errorf("ResolveImage b:1 behind the index: %v %v, want tags %v", img.RepoTags, err, wantTags)
	}
	if img, err := s.CacheGet("step"); err != nil || !slices.Equal(img.RepoTags, wantTags) {
		t.Errorf("CacheGet behind the index: %v %v, want tags %v", img.RepoTags, err, wantTags)
	}
	r := checkOK(t, s, "behind the index")
	if len(r.Garbage) != 1 || !strings.Contains(r.Garbage[0], "holders index is behind") {
		t.Errorf("check behind the index: garbage %q, want the index behind alone", r.Garbage)
	}
	if _, err := s.RemoveImage("a:1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Layer(b.Layers[0]); err != nil {
		t.Errorf("the layer b shares with a, after rmi a: %v", err)
	}
	checkOK(t, s, "after rmi a")
	// rmi -f of b by ID untags both and drops its cache entry.
	if _, err := s.RemoveImage(string(b.ID), true); err != nil {
		t.Fatal(err)
	}
	if imgs, err := s.Images(); err != nil || len(imgs) != 0 {
		t.Errorf("images after rmi -f b: %v %v", imgs, err)
	}
	if _, err := s.CacheGet("step"); !errors.Is(err, ErrNotFound) {
		t.Errorf("CacheGet after rmi -f b: %v, want ErrNotFound", err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
}
