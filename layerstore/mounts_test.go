package layerstore

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// leaseOf takes a lease on img for this process, as a mount does.
func leaseOf(t *testing.T, s *Store, id string, img Image) {
	t.Helper()
	if err := s.AddMount(MountRecord{ID: id, Image: img.ID, Ref: "r", Dir: "/mnt/" + id, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.MountDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
}

// mountedRmiFixture stores two images sharing a base layer, mounts the
// second (lease and built tree) and removes it with force, as rmi -f does.
func mountedRmiFixture(t *testing.T, s *Store) (kept, gone Image) {
	t.Helper()
	base := makeTar(t, tarEntry{name: "bin/", typ: '5'}, tarEntry{name: "bin/sh", body: "shell"})
	top := makeTar(t, tarEntry{name: "data", body: "only the removed image has this"})
	kept, err := importLayers(t, s, "kept:1", base)
	if err != nil {
		t.Fatal(err)
	}
	if gone, err = importLayers(t, s, "gone:1", base, top); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ImageTree("gone:1"); err != nil {
		t.Fatal(err)
	}
	leaseOf(t, s, "m1", gone)
	if _, err := s.RemoveImage("gone:1", true); err != nil {
		t.Fatalf("rmi -f of a mounted image: %v", err)
	}
	// The lease still holds what the mount shows.
	if r := checkOK(t, s, "mounted, image removed"); len(r.Garbage) != 0 {
		t.Errorf("garbage while the lease holds the image: %v", r.Garbage)
	}
	if _, err := os.Stat(s.ObjectPath(sha([]byte("only the removed image has this")))); err != nil {
		t.Fatalf("an object of the mounted image went while the lease held it: %v", err)
	}
	return kept, gone
}

// assertOnly fails unless the store holds exactly the image kept: its
// layers, its tree if built, its objects and nothing else.
func assertOnly(t *testing.T, s *Store, kept Image, goneTop digest.Digest) {
	t.Helper()
	r := checkOK(t, s, "after the lease went")
	if len(r.Garbage) != 0 {
		t.Errorf("garbage: %v", r.Garbage)
	}
	if r.Images != 1 || r.Layers != 1 || r.Objects != 1 || r.Mounts != 0 {
		t.Errorf("%d images, %d layers, %d objects, %d mounts; want 1, 1, 1, 0", r.Images, r.Layers, r.Objects, r.Mounts)
	}
	if r.Trees > 1 {
		t.Errorf("%d trees, want at most the kept image's", r.Trees)
	}
	if _, err := os.Stat(s.ObjectPath(sha([]byte("only the removed image has this")))); !os.IsNotExist(err) {
		t.Errorf("the removed image's object file is still there (%v)", err)
	}
	du, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	if du.Layers != r.Layers || du.Objects != r.Objects {
		t.Errorf("df counts %d layers, %d objects; check %d, %d", du.Layers, du.Objects, r.Layers, r.Objects)
	}
	if _, err := s.LayerTar(goneTop); err == nil {
		t.Errorf("the removed image's top layer %s is still stored", goneTop)
	}
	if _, err := os.Stat(s.MountDir("m1")); !os.IsNotExist(err) {
		t.Errorf("the mount directory is still there (%v)", err)
	}
}

// rmi -f of a mounted image, then umount: what only the mount still held
// goes when its lease does, and nothing is left for check or gc to find.
func TestStore_RemoveMount_AfterForcedRemoval_LeavesNothing(t *testing.T) {
	s := newTestStore(t)
	kept, gone := mountedRmiFixture(t, s)
	if err := s.RemoveMount("m1"); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, s, kept, gone.Layers[1])
	if _, _, err := s.ImageTree("kept:1"); err != nil {
		t.Errorf("the image that shares the base layer: %v", err)
	}
	g, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Layers) != 0 || g.Objects != 0 {
		t.Errorf("gc found %d layers and %d objects that umount should have removed", len(g.Layers), g.Objects)
	}
}

// When the store is busy (an import holds it) the lease still goes; what it
// held is then garbage that check reports and gc removes.
func TestStore_RemoveMount_StoreBusy_OrphansAreGarbage(t *testing.T) {
	s := newTestStore(t)
	kept, gone := mountedRmiFixture(t, s)
	lk, err := s.lock(false) // what an import in flight holds
	if err != nil {
		t.Fatal(err)
	}
	busy, err := Open(s.Root(), &Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = busy.RemoveMount("m1")
	lk.unlock()
	if err != nil {
		t.Fatalf("umount while an import runs: %v", err)
	}
	if ms, _ := s.Mounts(); len(ms) != 0 {
		t.Fatalf("the lease is still there: %v", ms)
	}
	r := checkOK(t, s, "lease gone, sweep left for gc")
	want := map[string]bool{
		"layer " + string(gone.Layers[1]) + ": no image or mount holds it":                    true,
		"tree " + string(gone.ChainID) + ": no image or mount holds it":                       true,
		"unreferenced object " + s.ObjectPath(sha([]byte("only the removed image has this"))): false, // still referenced by the orphan layer
	}
	got := map[string]bool{}
	for _, g := range r.Garbage {
		got[g] = true
	}
	for g, w := range want {
		if got[g] != w {
			t.Errorf("garbage %q reported: %v, want %v (all: %v)", g, got[g], w, r.Garbage)
		}
	}
	if len(r.Garbage) != 2 {
		t.Errorf("garbage %v, want the orphan layer and tree", r.Garbage)
	}
	g, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Layers) != 1 || g.Layers[0] != gone.Layers[1] || g.Objects != 1 {
		t.Errorf("gc removed layers %v and %d objects, want the orphan layer and its object", g.Layers, g.Objects)
	}
	assertOnly(t, s, kept, gone.Layers[1])
}

// The lease of an image still stored holds nothing of its own: its removal
// neither sweeps nor waits for an import that holds the store (a container's
// exit, a snapshot's commit), and leaves nothing behind.
func TestStore_RemoveMount_ImageStored_NoWaitNoGarbage(t *testing.T) {
	s := newTestStore(t)
	img, err := importLayers(t, s, "img:1", makeTar(t, tarEntry{name: "f", body: "kept"}))
	if err != nil {
		t.Fatal(err)
	}
	leaseOf(t, s, "m1", img)
	lk, err := s.lock(false) // what an import in flight holds
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	busy, err := Open(s.Root(), &Options{LockTimeout: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = busy.RemoveMount("m1")
	lk.unlock()
	if err != nil {
		t.Fatalf("umount while an import runs: %v", err)
	}
	if strings.Contains(log.String(), "store busy") {
		t.Errorf("the removal waited for the import's lock: %s", log.String())
	}
	if ms, _ := s.Mounts(); len(ms) != 0 {
		t.Fatalf("the lease is still there: %v", ms)
	}
	if r := checkOK(t, s, "lease of a stored image gone"); len(r.Garbage) != 0 || r.Images != 1 || r.Objects != 1 {
		t.Errorf("after the lease: %d images, %d objects, garbage %v; want the image and its object, no garbage", r.Images, r.Objects, r.Garbage)
	}
}

func TestStore_AddMount_IDOutsideMounts_HarmsNothing(t *testing.T) {
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

// Mount reads one lease by its ID: the one asked for, whatever the others
// hold (a torn one included), and ErrNotFound for an ID no lease has.
func TestStore_Mount_ReadsOneLease(t *testing.T) {
	s := newTestStore(t)
	img, err := importLayers(t, s, "img:1", makeTar(t, tarEntry{name: "f", body: "kept"}))
	if err != nil {
		t.Fatal(err)
	}
	leaseOf(t, s, "m1", img)
	leaseOf(t, s, "m2", img)
	m, err := s.Mount("m1")
	if err != nil || m.ID != "m1" || m.Image != img.ID || m.Dir != "/mnt/m1" || m.PID != os.Getpid() || len(m.Layers) != 1 {
		t.Fatalf("Mount(m1) = %+v, %v", m, err)
	}
	if _, err := s.Mount("m3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Mount of an ID no lease has: %v, want ErrNotFound", err)
	}
	// A torn lease beside it: Mounts fails on it, Mount of another does not.
	if err := s.update(func(tx *bolt.Tx) error { return bucket(tx, bucketMounts).Put([]byte("m2"), []byte("{torn")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mounts(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Mounts with a torn lease: %v, want ErrCorrupt", err)
	}
	if m, err := s.Mount("m1"); err != nil || m.ID != "m1" {
		t.Errorf("Mount(m1) beside a torn lease: %+v, %v", m, err)
	}
	if _, err := s.Mount("m2"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Mount of the torn lease: %v, want ErrCorrupt", err)
	}
	for _, id := range []string{"m1", "m2"} {
		if err := s.RemoveMount(id); err != nil {
			t.Fatal(err)
		}
	}
	checkOK(t, s, "leases removed")
}

// AddMountDir makes the lease and its directory at once; check reports a
// kept lease whose directory is gone (its top layer lost) as a problem,
// and one that is not kept, or read-only, has none to lose.
func TestStore_Check_KeptLeaseWithoutDirectory(t *testing.T) {
	s := newTestStore(t)
	img, err := importLayers(t, s, "img:1", makeTar(t, tarEntry{name: "f", body: "kept"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []MountRecord{
		{ID: "kept", Image: img.ID, Keep: true},
		{ID: "served", Image: img.ID},
	} {
		if err := s.AddMountDir(m, "upper"); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(s.MountDir(m.ID), "upper")); err != nil || !fi.IsDir() {
			t.Fatalf("%s: top layer's directory after AddMountDir: %v", m.ID, err)
		}
	}
	if err := s.AddMount(MountRecord{ID: "ro", Image: img.ID, Keep: true, ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMountDir(MountRecord{ID: "bad", Image: img.ID}, "../x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddMountDir of ../x: %v, want ErrInvalid", err)
	}
	checkOK(t, s, "leases with their directories")
	for _, id := range []string{"kept", "served"} {
		if err := os.RemoveAll(s.MountDir(id)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Check(false)
	if err != nil || len(r.Problems) != 1 || !errors.Is(r.Problems[0], ErrCorrupt) || !strings.Contains(r.Problems[0].Error(), "mount kept:") {
		t.Errorf("check with the kept lease's directory gone: %v %v, want one problem naming mount kept", r.Problems, err)
	}
	for _, id := range []string{"kept", "served", "ro"} {
		if err := s.RemoveMount(id); err != nil {
			t.Fatal(err)
		}
	}
	checkOK(t, s, "leases removed")
}

// RemoveMountIf removes a lease only as the caller saw it: a kept lease a
// server took up after the caller read it stopped (a Resume racing rm) is
// refused with ErrInUse, and its directory stays; as seen, it goes.
func TestStore_RemoveMountIf_TakenUpMeanwhile(t *testing.T) {
	s := newTestStore(t)
	img, err := importLayers(t, s, "img:1", makeTar(t, tarEntry{name: "f", body: "kept"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddMountDir(MountRecord{ID: "kept", Image: img.ID, Keep: true}, "upper"); err != nil {
		t.Fatal(err)
	}
	seen, err := s.Mount("kept")
	if err != nil {
		t.Fatal(err)
	}
	seen.PID, seen.PIDStart = 0, 0 // stopped, as rm's reap leaves it
	if err := s.UpdateMount(*seen); err != nil {
		t.Fatal(err)
	}
	// A Resume takes it up: this process serves it now.
	resumed := *seen
	resumed.PID = os.Getpid()
	if resumed.PIDStart, err = ProcessStart(resumed.PID); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateMount(resumed); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveMountIf("kept", seen.PID, seen.PIDStart); !errors.Is(err, ErrInUse) {
		t.Errorf("RemoveMountIf of a lease taken up meanwhile: %v, want ErrInUse", err)
	}
	if m, err := s.Mount("kept"); err != nil || m.PID != resumed.PID {
		t.Errorf("the lease after the refused removal: %+v %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(s.MountDir("kept"), "upper")); err != nil {
		t.Errorf("its directory after the refused removal: %v", err)
	}
	if err := s.RemoveMountIf("kept", resumed.PID, resumed.PIDStart); err != nil {
		t.Fatalf("RemoveMountIf as seen: %v", err)
	}
	if _, err := s.Mount("kept"); !errors.Is(err, ErrNotFound) {
		t.Errorf("lease after RemoveMountIf: %v", err)
	}
	if _, err := os.Lstat(s.MountDir("kept")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory after RemoveMountIf: %v", err)
	}
	checkOK(t, s, "lease removed")
}
