package layerstore

// Removal: what removing an image frees and keeps, and a crash between its
// commit and the deletion of the object files.

import (
	"context"
	"os"
	"strings"
	"testing"

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
