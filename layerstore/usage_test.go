package layerstore_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-dev/strata/layerstore"
)

// TestDirUsage_AsDu: DirUsage counts what du counts: directories, blocks
// rather than sizes (a sparse file), each inode once (hard links, also
// across two dirs).
func TestDirUsage_AsDu(t *testing.T) {
	if _, err := exec.LookPath("du"); err != nil {
		t.Skip("no du to compare with")
	}
	top := t.TempDir()
	a, b := filepath.Join(top, "a"), filepath.Join(top, "b")
	for _, d := range []string{filepath.Join(a, "sub", "deeper"), b} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(a, "sub", "file")
	if err := os.WriteFile(file, bytes.Repeat([]byte("y"), 300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{filepath.Join(a, "link"), filepath.Join(b, "link")} {
		if err := os.Link(file, l); err != nil {
			t.Fatal(err)
		}
	}
	sparse, err := os.Create(filepath.Join(a, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sparse.WriteAt([]byte("end"), 64<<20); err != nil {
		t.Fatal(err)
	}
	sparse.Close()
	if err := os.Symlink("sub/file", filepath.Join(a, "sym")); err != nil {
		t.Fatal(err)
	}
	du := func(dirs ...string) int64 {
		out, err := exec.Command("du", append([]string{"-s", "-c", "-B1"}, dirs...)...).Output()
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		n, err := strconv.ParseInt(strings.Fields(lines[len(lines)-1])[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, dirs := range [][]string{{a}, {b}, {a, b}} {
		got, err := layerstore.DirUsage(dirs...)
		if err != nil {
			t.Fatal(err)
		}
		if want := du(dirs...); got != want {
			t.Errorf("DirUsage(%q) = %d, du says %d", dirs, got, want)
		}
	}
	if n, _ := layerstore.DirUsage(a); n >= 2*(300<<10) {
		t.Errorf("DirUsage(%s) = %d: the hard link or the sparse file counted in full", a, n)
	}
	if _, err := layerstore.DirUsage(filepath.Join(top, "gone")); !os.IsNotExist(err) {
		t.Errorf("DirUsage of a missing dir: %v, want not-exist", err)
	}
}
