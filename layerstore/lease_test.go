package layerstore_test

// Mount leases through the public API: what a live, stale or pending lease
// keeps from rm, prune and GC.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

func liveLease(t *testing.T, id string, img layerstore.Image) layerstore.MountRecord {
	t.Helper()
	start, err := layerstore.ProcessStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return layerstore.MountRecord{ID: id, Image: img.ID, Ref: "r", Layers: img.Layers, ChainID: img.ChainID,
		Dir: "/mnt/" + id, PID: os.Getpid(), PIDStart: start, Created: time.Now()}
}

func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func leaseImage(t *testing.T, s *layerstore.Store) (layerstore.Image, []digest.Digest) {
	t.Helper()
	img, err := storeImage(t, s, "leased:1",
		rtar(t, rdir("etc"), rfile("etc/os-release", "ID=review"), rfile("bin/sh", "shell")),
		rtar(t, rfile("app", "application"), rwh("bin", "sh")))
	if err != nil {
		t.Fatal(err)
	}
	_, tree, err := s.ImageTree("leased:1")
	if err != nil {
		t.Fatal(err)
	}
	return img, objectsOf(tree)
}

func TestStore_Lease_LiveMount_HoldsImage(t *testing.T) {
	s := storetest.Open(t)
	img, objs := leaseImage(t, s)
	if err := s.AddMount(liveLease(t, "live", img)); err != nil {
		t.Fatal(err)
	}
	var ce *layerstore.ConflictError
	if _, err := s.RemoveImage("leased:1", false); !errors.As(err, &ce) || !errors.Is(err, layerstore.ErrInUse) {
		t.Fatalf("rm of a mounted image without force: %v, want a conflict", err)
	}
	if rep, err := s.Prune(true); err != nil || rep.DeletedImages != 0 {
		t.Fatalf("prune -a with a live mount: %+v %v", rep, err)
	}
	if rep, err := s.GC(); err != nil || len(rep.Mounts) != 0 || rep.Objects != 0 {
		t.Fatalf("gc with a live mount: %+v %v", rep, err)
	}
	if _, err := s.RemoveImage("leased:1", true); err != nil {
		t.Fatalf("rm -f: %v", err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, s, objs, true, "rm -f and gc with the mount alive")
	if tr, err := s.LayerTree(img.Layers); err != nil || tr.Len() == 0 {
		t.Errorf("tree of the leased chain after rm -f: %v", err)
	}
	// bin/sh is whited out but its layer is leased: its object must stay too
	objectsPresent(t, s, []digest.Digest{digest.FromString("shell")}, true, "rm -f with the mount alive")
	if err := s.RemoveMount("live"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, s, append(objs, digest.FromString("shell")), false, "umount and gc")
	du, _ := s.DiskUsage()
	if du.Layers != 0 || du.Objects != 0 {
		t.Errorf("after umount and gc: %d layers, %d objects", du.Layers, du.Objects)
	}
}

func TestStore_Lease_StaleMount_DroppedByGC(t *testing.T) {
	s := storetest.Open(t)
	img, objs := leaseImage(t, s)
	m := liveLease(t, "stale", img)
	m.PID, m.PIDStart = deadPID(t), 1
	if err := s.AddMount(m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveImage("leased:1", false); err != nil {
		t.Fatalf("rm of an image whose only mount is dead: %v", err)
	}
	// the stale lease still keeps layers and objects until GC drops it
	objectsPresent(t, s, objs, true, "rm with a stale lease")
	rep, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mounts) != 1 || rep.Mounts[0] != "stale" {
		t.Errorf("gc dropped leases %v, want [stale]", rep.Mounts)
	}
	objectsPresent(t, s, objs, false, "gc of the stale lease")
	if ms, _ := s.Mounts(); len(ms) != 0 {
		t.Errorf("leases after gc: %+v", ms)
	}
}

func TestStore_Lease_PruneAll_SparesLiveOnly(t *testing.T) {
	s := storetest.Open(t)
	img, objs := leaseImage(t, s)
	other, err := storeImage(t, s, "other:1", rtar(t, rfile("o", "other")))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddMount(liveLease(t, "live", img)); err != nil {
		t.Fatal(err)
	}
	st := liveLease(t, "stale", other)
	st.PID, st.PIDStart = deadPID(t), 1
	if err := s.AddMount(st); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Prune(true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.DeletedImages != 1 || rep.Deleted[0] != other.ID {
		t.Errorf("prune -a deleted %v, want only %s", rep.Deleted, other.ID)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, s, objs, true, "prune -a and gc with a live mount")
	objectsPresent(t, s, []digest.Digest{digest.FromString("other")}, false, "prune -a and gc of a stale mount's image")
}

// A lease must protect the image's layers whatever the caller put in the
// record's Layers and ChainID: the store knows them from the image.
func TestStore_Lease_RecordWithoutLayers_StillHolds(t *testing.T) {
	s := storetest.Open(t)
	img, objs := leaseImage(t, s)
	m := liveLease(t, "live", img)
	m.Layers, m.ChainID = nil, ""
	if err := s.AddMount(m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveImage("leased:1", true); err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, s, objs, true, "rm -f of an image a live mount uses")
}

// UpdateMount exists because "the server's pid is known only once it runs":
// between AddMount and UpdateMount the lease has no pid. GC must not drop it
// (and delete the mount's upper directory) in that window.
func TestStore_Lease_Pending_SurvivesGC(t *testing.T) {
	s := storetest.Open(t)
	img, _ := leaseImage(t, s)
	m := liveLease(t, "pending", img)
	m.PID, m.PIDStart = 0, 0
	if err := s.AddMount(m); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(s.MountDir("pending"), "upper")
	if err := os.MkdirAll(upper, 0o700); err != nil {
		t.Fatal(err)
	}
	rep, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mounts) != 0 {
		t.Errorf("gc dropped the pending lease: %v", rep.Mounts)
	}
	if _, err := os.Stat(upper); err != nil {
		t.Errorf("gc deleted the pending mount's upper dir: %v", err)
	}
}

// GC frees the directories under mounts/ that no lease names. A mount being
// made takes its lease and then makes its directory: GC running at that
// moment must see the lease, or remove nothing of what comes after it.
// Leases are made and their directories written while GC runs over and
// over; every live lease keeps its directory and what was written in it.
func TestStore_GC_ConcurrentLeasesKeepTheirDirectories(t *testing.T) {
	s := storetest.Open(t)
	img, _ := leaseImage(t, s)
	const workers, each = 8, 60
	proto := liveLease(t, "proto", img)
	gcs := storetest.WhileGC(t, s, workers, func(w int) error {
		for i := range each {
			id := fmt.Sprintf("race-%d-%d", w, i)
			m := proto
			m.ID, m.Dir = id, "/mnt/"+id
			if err := s.AddMount(m); err != nil {
				return err
			}
			upper := filepath.Join(s.MountDir(id), "upper")
			if err := os.MkdirAll(upper, 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(upper, "f"), []byte(id), 0o600); err != nil {
				return fmt.Errorf("%s: write in its top layer: %w", id, err)
			}
			time.Sleep(time.Millisecond) // let a GC run over it
			if b, err := os.ReadFile(filepath.Join(upper, "f")); err != nil || string(b) != id {
				return fmt.Errorf("%s: its top layer lost its file while the lease lives: %q, %v", id, b, err)
			}
			if err := s.RemoveMount(id); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("%d leases against %d GC runs", workers*each, gcs)
	if ms, _ := s.Mounts(); len(ms) != 0 {
		t.Errorf("leases left: %v", ms)
	}
	storetest.Check(t, s)
}

// RemoveMountDir removes a directory no lease names, and refuses one a
// lease names (a mount being made under that ID), keeping it.
func TestStore_RemoveMountDir(t *testing.T) {
	s := storetest.Open(t)
	img, _ := leaseImage(t, s)
	for _, id := range []string{"orphan", "leased"} {
		if err := os.MkdirAll(filepath.Join(s.MountDir(id), "upper"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddMount(liveLease(t, "leased", img)); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveMountDir("orphan"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.MountDir("orphan")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan directory left: %v", err)
	}
	if err := s.RemoveMountDir("orphan"); err != nil {
		t.Errorf("again: %v", err)
	}
	if err := s.RemoveMountDir("leased"); !errors.Is(err, layerstore.ErrInUse) {
		t.Errorf("leased: got %v, want ErrInUse", err)
	}
	if _, err := os.Stat(filepath.Join(s.MountDir("leased"), "upper")); err != nil {
		t.Errorf("a leased directory went: %v", err)
	}
	if err := s.RemoveMountDir("../x"); !errors.Is(err, layerstore.ErrInvalid) {
		t.Errorf("bad id: got %v, want ErrInvalid", err)
	}
	if err := s.RemoveMount("leased"); err != nil {
		t.Fatal(err)
	}
	storetest.Check(t, s)
}
