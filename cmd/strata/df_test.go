package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// diskUsage is the store's own accounting, to compare df with.
func diskUsage(t *testing.T, root string) *layerstore.DiskUsage {
	t.Helper()
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	du, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	return du
}

// buildTree stores the merged tree of ref, as its first mount does.
func buildTree(t *testing.T, root, ref string) {
	t.Helper()
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, tree, err := s.ImageTree(ref)
	if err != nil {
		t.Fatal(err)
	}
	tree.Close()
}

func TestSystemDf_Empty(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	want := `TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE
Images          0         0         0B        0B
Containers      0         0         0B        0B
Local Volumes   0         0         0B        0B
Mounts          0         0         0B        0B
Layers          0         0         0B        0B

Stored objects: 0, 0B on disk for 0B of file content across images (0B saved by sharing)
Tree files: 0, 0B on disk (merged trees of the chains mounted or built)
`
	if got := mustRun(t, root, "system", "df"); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSystemDf_Sharing(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	du := diskUsage(t, root)

	header, rows := tableRows(t, strings.SplitN(mustRun(t, root, "system", "df"), "\n\n", 2)[0])
	if want := []string{"TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"}; !slices.Equal(header, want) {
		t.Errorf("header %q, want %q", header, want)
	}
	wantRows := [][]string{
		// One image's size, as images shows it (docker's definition).
		{"Images", "1", "0", humanSize(demoSize(t, root), 4), humanSize(demoSize(t, root), 4) + " (100%)"},
		{"Containers", "0", "0", "0B", "0B"},
		{"Local Volumes", "0", "0", "0B", "0B"},
		{"Mounts", "0", "0", "0B", "0B"},
		{"Layers", "5", "0", humanSize(demoSize(t, root), 4), humanSize(demoSize(t, root), 4) + " (100%)"},
	}
	if !slices.EqualFunc(rows, wantRows, slices.Equal) {
		t.Errorf("rows %q\nwant %q", rows, wantRows)
	}

	out := mustRun(t, root, "system", "df", "--format", "json")
	var types []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var row map[string]string
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		types = append(types, row["Type"]+"="+row["TotalCount"])
	}
	if want := []string{"Images=1", "Containers=0", "Local Volumes=0", "Mounts=0", "Layers=5"}; !slices.Equal(types, want) {
		t.Errorf("--format json: %q, want %q", types, want)
	}

	// A second image of the same files: everything it holds is shared.
	mustRun(t, root, "import", "-q", filepath.Join(fixtureDir(t), "rootfs.tar"), "flat")
	storetest.CheckRoot(t, root)
	buildTree(t, root, "flat")
	du2 := diskUsage(t, root)
	if du2.ImagesSize-du2.ObjectsSize <= du.ImagesSize-du.ObjectsSize {
		t.Errorf("sharing saved %d bytes with one image, %d with two", du.ImagesSize-du.ObjectsSize, du2.ImagesSize-du2.ObjectsSize)
	}
	out = mustRun(t, root, "system", "df", "-v")
	sections := strings.Split(out, "\n\n")
	// title, table (an empty one is its header) six times, objects and trees lines
	if len(sections) != 13 || sections[0] != "Images space usage:" || sections[2] != "Containers space usage:" ||
		sections[4] != "Local Volumes space usage:" || sections[6] != "Mounts space usage:" || sections[8] != "Layers space usage:" ||
		sections[10] != "Trees space usage:" {
		t.Fatalf("df -v sections:\n%s", out)
	}
	header, rows = tableRows(t, sections[1])
	if want := []string{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "MOUNTS"}; !slices.Equal(header, want) {
		t.Errorf("images header %q, want %q", header, want)
	}
	if len(rows) != 2 {
		t.Fatalf("%d image rows:\n%s", len(rows), sections[1])
	}
	for _, r := range rows {
		if len(r) != 8 || r[5] == "0B" || r[7] != "0" {
			t.Errorf("image row %q: want a shared size and no mounts", r)
		}
	}
	header, rows = tableRows(t, sections[9])
	if want := []string{"LAYER ID", "SIZE", "IMAGES", "MOUNTS", "HELD BY"}; !slices.Equal(header, want) || len(rows) != 6 {
		t.Errorf("layers table %q, %d rows", header, len(rows))
	}
	header, rows = tableRows(t, sections[11])
	if want := []string{"CHAIN ID", "LAYERS", "ENTRIES", "SIZE"}; !slices.Equal(header, want) || len(rows) != len(du2.TreeUsage) || len(rows) == 0 {
		t.Errorf("trees table %q, %d rows; the store has %d trees", header, len(rows), len(du2.TreeUsage))
	}
	if want := "Stored objects: " + itoa(du2.Objects) + ", "; !strings.HasPrefix(sections[12], want) {
		t.Errorf("objects line %q, want it to start %q", sections[12], want)
	}
	if want := "\nTree files: " + itoa(du2.Trees) + ", " + humanSize(du2.TreesOnDisk, 4) + " on disk"; !strings.Contains(sections[12], want) {
		t.Errorf("last lines %q, want them to hold %q", sections[12], want)
	}
	if got := mustRun(t, root, "system", "df", "-v", "--format", "{{len .Images}} {{len .Mounts}} {{len .Layers}}"); got != "2 0 6" {
		t.Errorf("-v --format: %q", got)
	}
}

// TestDf_MountSizeAgreesWithMounts: "strata mounts" and "system df -v" show
// one measure of a mount's size (layerstore.Store.MountUsage), each in its
// docker precision; a hard-linked file in the top layer counts once.
func TestDf_MountSizeAgreesWithMounts(t *testing.T) {
	root := storetest.Root(t)
	loadDemo(t, root)
	dir, _ := startMount(t, root)
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(big, filepath.Join(dir, "big-link")); err != nil {
		t.Fatal(err)
	}
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	du, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	if len(du.MountUsage) != 1 || !du.MountUsage[0].Alive {
		t.Fatalf("DiskUsage mounts %+v, want one live mount", du.MountUsage)
	}
	m := du.MountUsage[0]
	n, err := s.MountUsage(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n != m.Size || n != du.MountsSize || n < 1<<20 || n >= 2<<20 {
		t.Errorf("MountUsage %d, DiskUsage %d (total %d): want one size of 1 MiB and a little, the link counted once", n, m.Size, du.MountsSize)
	}
	if got, want := strings.TrimSpace(mustRun(t, root, "mounts", "--format", "{{.ID}} {{.Size}}")), m.ID+" "+humanSize(n, 3); got != want {
		t.Errorf("strata mounts: %q, want %q", got, want)
	}
	if got, want := mustRun(t, root, "system", "df", "-v", "--format", `{{range .Mounts}}{{.ID}} {{.Size}}{{end}}`), m.ID+" "+humanSize(n, 4); got != want {
		t.Errorf("system df -v: %q, want %q", got, want)
	}
	_, rows := tableRows(t, strings.SplitN(mustRun(t, root, "system", "df"), "\n\n", 2)[0])
	if rows[3][0] != "Mounts" || rows[3][3] != humanSize(n, 4) {
		t.Errorf("system df mounts row %q, want size %s", rows[3], humanSize(n, 4))
	}
}

// What containerd's snapshotter holds shows in df: a line per holder, and
// each layer's holders in -v.
func TestSystemDf_HeldByContainerd(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	if out := mustRun(t, root, "system", "df"); strings.Contains(out, "Held by") {
		t.Errorf("df with nothing held:\n%s", out)
	}
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hold("demo:latest", "containerd's snapshotter"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if out := mustRun(t, root, "system", "df"); !strings.Contains(out, "\nHeld by containerd's snapshotter: 1 image, 5 layers (prune and rmi keep them)\n") {
		t.Errorf("df with demo held:\n%s", out)
	}
	got := mustRun(t, root, "system", "df", "-v", "--format", "{{range .Layers}}{{.HeldBy}};{{end}}")
	if want := strings.Repeat("containerd's snapshotter;", 5); got != want {
		t.Errorf("-v layers held by: %q, want %q", got, want)
	}
	if out := mustRun(t, root, "system", "df", "-v"); !strings.Contains(out, "HELD BY") {
		t.Errorf("df -v has no HELD BY column:\n%s", out)
	}
}
