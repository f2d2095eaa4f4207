package layerstore

import (
	"os"
	"path/filepath"
	"testing"
)

// DiskUsage counts the tree files under trees/ (system df): each file once,
// however many chains share its merged tree, and none once they are gone.
func TestStore_DiskUsage_CountsTreeFiles(t *testing.T) {
	s := newTestStore(t)
	base := makeTar(t, tarEntry{name: "bin/", typ: '5'}, tarEntry{name: "bin/sh", body: "shell"})
	top := makeTar(t, tarEntry{name: "data", body: "top"})
	one, err := importLayers(t, s, "one:1", base)
	if err != nil {
		t.Fatal(err)
	}
	two, err := importLayers(t, s, "two:1", base, top)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"one:1", "two:1"} {
		_, tree, err := s.ImageTree(ref)
		if err != nil {
			t.Fatal(err)
		}
		tree.Close()
	}
	du, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(s.Root(), "trees", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk int64
	for _, f := range files {
		onDisk += diskUsage(f)
	}
	if du.Trees != len(files) || du.Trees != 2 || du.TreesOnDisk != onDisk || onDisk == 0 {
		t.Errorf("df counts %d tree files, %d bytes; trees/ holds %d files, %d bytes (want 2)", du.Trees, du.TreesOnDisk, len(files), onDisk)
	}
	want := map[string]int{one.ChainID.String(): 1, two.ChainID.String(): 2}
	if len(du.TreeUsage) != 2 {
		t.Fatalf("tree usage %+v, want the two chains", du.TreeUsage)
	}
	for _, u := range du.TreeUsage {
		if want[u.ChainID.String()] != u.Layers || u.Entries == 0 || u.Size == 0 {
			t.Errorf("tree %+v: want %d layers, entries and a size", u, want[u.ChainID.String()])
		}
	}
	for _, ref := range []string{"one:1", "two:1"} {
		if _, err := s.RemoveImage(ref, false); err != nil {
			t.Fatal(err)
		}
	}
	if du, err = s.DiskUsage(); err != nil {
		t.Fatal(err)
	}
	if du.Trees != 0 || du.TreesOnDisk != 0 || len(du.TreeUsage) != 0 {
		t.Errorf("after removing both images: %d tree files, %d bytes, %v", du.Trees, du.TreesOnDisk, du.TreeUsage)
	}
	if left, _ := os.ReadDir(filepath.Join(s.Root(), "trees")); len(left) != 0 {
		t.Errorf("trees/ still holds %d files", len(left))
	}
	checkOK(t, s, "after the removals")
}
