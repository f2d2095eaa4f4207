package layerstore_test

import (
	"path/filepath"
	"testing"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/treecmp"
)

// loadArchive loads every image of an archive the way `strata load` does.
// TestStore_Load_Fixtures loads the fixture image from every format and
// compares its merged tree with umoci's unpack of it, entry by entry.
func TestStore_Load_Fixtures(t *testing.T) {
	dir := fixtures.Dir(t)
	want, err := treecmp.Snapshot(filepath.Join(dir, "rootfs"), treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, format := range []string{"oci", "oci-zstd", "demo.docker.tar", "demo.oci.tar"} {
		t.Run(format, func(t *testing.T) {
			s := storetest.Open(t)
			imgs := storetest.Load(t, s, filepath.Join(dir, format))
			if len(imgs) != 1 || len(imgs[0].Layers) != 5 {
				t.Fatalf("loaded %d images; want one of 5 layers", len(imgs))
			}
			if len(imgs[0].RepoTags) != 1 || imgs[0].RepoTags[0] != "demo:latest" {
				t.Errorf("tags %v, want [demo:latest]", imgs[0].RepoTags)
			}
			ids = append(ids, string(imgs[0].ID))
			_, tree, err := s.ImageTree("demo")
			if err != nil {
				t.Fatal(err)
			}
			// umoci's unpack sets the root's attributes from nothing in the image.
			for _, d := range treecmp.Compare(treecmp.FromLayerTree(tree), want, treecmp.Options{IgnoreRoot: true, IgnoreInodes: true}) {
				t.Error(d)
			}
			// Every layer comes back byte for byte: its sha256 is its diffID.
			storetest.CheckLayers(t, s, imgs[0])
			// Loading again stores nothing new.
			du1, _ := s.DiskUsage()
			storetest.Load(t, s, filepath.Join(dir, format))
			du2, _ := s.DiskUsage()
			if du1.Objects != du2.Objects || du1.Layers != du2.Layers || len(du2.Images) != 1 {
				t.Errorf("second load changed the store: %+v -> %+v", du1, du2)
			}
		})
	}
	// The same config in every format: the same image ID, as docker shows it.
	for _, id := range ids[1:] {
		if id != ids[0] && ids[0] != "" {
			// zstd recompression keeps the diffIDs, so the config is unchanged.
			t.Errorf("image IDs differ across formats: %v", ids)
			break
		}
	}
}

// TestStore_Load_AllFormatsShareObjects: one store, every format: the layers
// and objects are stored once.
func TestStore_Load_AllFormatsShareObjects(t *testing.T) {
	dir := fixtures.Dir(t)
	s := storetest.Open(t)
	storetest.Load(t, s, filepath.Join(dir, "oci"))
	du1, _ := s.DiskUsage()
	for _, f := range []string{"oci-zstd", "demo.docker.tar", "demo.oci.tar"} {
		storetest.Load(t, s, filepath.Join(dir, f))
	}
	du2, _ := s.DiskUsage()
	if du2.Objects != du1.Objects || du2.Layers != du1.Layers {
		t.Errorf("objects %d -> %d, layers %d -> %d: want unchanged", du1.Objects, du2.Objects, du1.Layers, du2.Layers)
	}
	// blob.bin and app/blob-copy.bin share one object
	if du1.ObjectsSize >= du1.LayersSize {
		t.Errorf("stored %d bytes for %d bytes of layer content: no dedup", du1.ObjectsSize, du1.LayersSize)
	}
}
