package fs_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-dev/strata/fs"
)

// SyncMount reports a file of the upper dir it cannot open through the
// mount, naming it: the writes the kernel holds for it would be missing
// from the upper dir. One removed since (no name in the mount) is skipped.
func TestSyncMount_ReportsOpenErrors(t *testing.T) {
	base := t.TempDir()
	dir, upper := filepath.Join(base, "mnt"), filepath.Join(base, "upper")
	for _, d := range []string{dir, upper, filepath.Join(upper, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"gone", "sub/sock"} {
		if err := os.WriteFile(filepath.Join(upper, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.SyncMount(dir, upper); err != nil {
		t.Fatalf("files gone from the mount: %v", err)
	}
	// In the mount's place a socket, which open(2) refuses with ENXIO.
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "sub", "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = fs.SyncMount(dir, upper)
	if !errors.Is(err, syscall.ENXIO) || !strings.Contains(err.Error(), "sub/sock") {
		t.Errorf("SyncMount with a file it cannot open: %v, want ENXIO naming sub/sock", err)
	}
}
