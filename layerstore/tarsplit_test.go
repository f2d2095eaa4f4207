package layerstore_test

// LayerTar fidelity, and trees, for the archives GNU tar writes.

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/treecmp"
)

// gnuSource fills dir with what odd tars are made of: long names and link
// targets, hard links, a sparse file, zero-size files, a fifo, non-ASCII
// names, sub-second mtimes and (where the file system has them) xattrs.
func gnuSource(t *testing.T, dir string, long bool) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "d"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	must(os.WriteFile(filepath.Join(dir, "d", "empty2"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("content\n"), 0o640))
	must(os.Link(filepath.Join(dir, "file"), filepath.Join(dir, "d", "hard1")))
	must(os.Link(filepath.Join(dir, "file"), filepath.Join(dir, "hard2")))
	must(os.WriteFile(filepath.Join(dir, "zlink-target"), []byte("z"), 0o644))
	must(os.Link(filepath.Join(dir, "zlink-target"), filepath.Join(dir, "a-link-first")))
	must(os.Symlink("file", filepath.Join(dir, "sym")))
	must(exec.Command("mkfifo", filepath.Join(dir, "fifo")).Run())
	must(os.WriteFile(filepath.Join(dir, "ünïcødé-名前"), []byte("utf8"), 0o644))
	// sparse: data at 0, 1 MiB and the last byte of 8 MiB
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	rnd := make([]byte, 70000)
	for i := range rnd {
		rnd[i] = byte(i*7 + i/251)
	}
	_, err = f.WriteAt(rnd, 0)
	must(err)
	_, err = f.WriteAt(rnd[:5000], 1<<20)
	must(err)
	_, err = f.WriteAt([]byte{1}, 8<<20-1)
	must(err)
	must(f.Close())
	if long {
		deep := filepath.Join(dir, strings.Repeat("long-directory-name-", 6), strings.Repeat("deeper-", 20))
		must(os.MkdirAll(deep, 0o755))
		must(os.WriteFile(filepath.Join(deep, strings.Repeat("file-with-a-long-name-", 8)), []byte("deep"), 0o644))
		must(os.Link(filepath.Join(deep, strings.Repeat("file-with-a-long-name-", 8)), filepath.Join(dir, strings.Repeat("L", 150))))
		must(os.Symlink(strings.Repeat("../", 40)+"target-of-a-long-symlink", filepath.Join(dir, "longsym")))
	}
	exec.Command("setfattr", "-n", "user.review", "-v", "yes", filepath.Join(dir, "file")).Run()
	ts := time.Unix(1700000000, 123456789)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 {
			os.Chtimes(p, ts, ts)
		}
		return nil
	})
}

func TestStore_LayerTar_GNUTarFormats(t *testing.T) {
	needTool(t, "tar")
	cases := []struct {
		name string
		args []string
		long bool
	}{
		{"gnu", []string{"--format=gnu"}, true},
		{"gnu-sparse", []string{"--format=gnu", "--sparse"}, true},
		{"oldgnu-sparse", []string{"--format=oldgnu", "--sparse"}, true},
		{"posix", []string{"--format=posix", "--xattrs"}, true},
		{"posix-sparse-0.0", []string{"--format=posix", "--sparse", "--sparse-version=0.0"}, true},
		{"posix-sparse-0.1", []string{"--format=posix", "--sparse", "--sparse-version=0.1"}, true},
		{"posix-sparse-1.0", []string{"--format=posix", "--sparse", "--sparse-version=1.0", "--xattrs"}, true},
		{"ustar", []string{"--format=ustar"}, false},
		{"v7", []string{"--format=v7"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			gnuSource(t, src, c.long)
			if c.name == "v7" { // v7 has no fifos
				os.Remove(filepath.Join(src, "fifo"))
			}
			args := append([]string{"-C", src, "--numeric-owner", "--sort=name", "-cf", "-"}, c.args...)
			args = append(args, ".")
			data, err := exec.Command("tar", args...).Output()
			if err != nil {
				t.Fatalf("tar %v: %v", args, err)
			}
			// data after the end-of-archive marker (beyond tar's own record padding)
			data = append(data, []byte("trailing garbage that is not a tar header at all")...)
			s := storetest.Open(t)
			img, err := storeImage(t, s, "", data)
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			if want := digest.FromBytes(data); img.Layers[0] != want {
				t.Fatalf("diffID %s, want %s", img.Layers[0], want)
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
			if !bytes.Equal(got, data) {
				t.Fatalf("LayerTar gave %d bytes, differing from the %d imported", len(got), len(data))
			}
			// The tree against GNU tar's own extraction.
			out := filepath.Join(t.TempDir(), "x")
			os.MkdirAll(out, 0o755)
			xargs := []string{"-C", out, "--numeric-owner", "--same-owner", "-p", "-xf", "-"}
			if strings.Contains(strings.Join(c.args, " "), "xattrs") {
				xargs = append(xargs, "--xattrs", "--xattrs-include=*")
			}
			x := exec.Command("tar", xargs...)
			x.Stdin = bytes.NewReader(data)
			if o, err := x.CombinedOutput(); err != nil {
				t.Fatalf("tar -x: %v\n%s", err, o)
			}
			want, err := treecmp.Snapshot(out, treecmp.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, tree, err := s.ImageTree(string(img.ID))
			if err != nil {
				t.Fatal(err)
			}
			opt := treecmp.Options{IgnoreRoot: true, IgnoreInodes: true, IgnoreXattrPrefix: []string{"security."}}
			for _, d := range treecmp.Compare(treecmp.FromLayerTree(tree), want, opt) {
				t.Errorf("store (A) vs tar -x (B): %s", d)
			}
		})
	}
}
