package session_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// serveEnv makes the test binary a mount server (see serveMain) instead of
// running tests: the dead-server tests kill it.
const serveEnv = "STRATA_SESSION_TEST_SERVE"

func TestMain(m *testing.M) {
	if v := os.Getenv(serveEnv); v != "" {
		os.Exit(serveMain(strings.Split(v, "\n")))
	}
	os.Exit(m.Run())
}

// serveMain mounts image args[1] of the store at args[0] on args[2] (kept
// when args[3] is "keep"), prints "ready ID" and serves until killed.
func serveMain(args []string) int {
	st, err := layerstore.Open(args[0], nil)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	s, err := session.Start(context.Background(), st, args[1], args[2], session.Options{Keep: args[3] == "keep"})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready", s.ID())
	if err := s.Serve(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// needFUSE skips t where FUSE mounts with a writable top layer cannot work.
func needFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts and trusted xattrs in the top layer")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// openStore opens a store in a temporary directory with the fixture image
// loaded as demo:latest; the test's cleanup checks it, contents and all,
// and fails on any problem or garbage.
func openStore(t testing.TB) *layerstore.Store {
	t.Helper()
	st := storetest.Open(t)
	storetest.Load(t, st, filepath.Join(fixtures.Dir(t), "oci"))
	return st
}

// rootfs is the fixture image unpacked by umoci: the reference answer.
func rootfs(t *testing.T) string { return filepath.Join(fixtures.Dir(t), "rootfs") }

// mountDir makes an empty mountpoint; cleanup detaches whatever a failed
// test left mounted there (before the store is checked).
func mountDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n, err := session.DetachFUSE(dir); err != nil || n > 0 {
			t.Errorf("%s: still mounted at the end: detached %d, %v", dir, n, err)
		}
	})
	return dir
}

// isMounted reports whether dir is a mount point now.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	mi, err := session.ReadMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	_, ok := session.Mounted(mi, dir)
	return ok
}

// leases returns the IDs of the store's leases.
func leases(t *testing.T, st *layerstore.Store) []string {
	t.Helper()
	recs, err := st.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// changes formats a diff one change a line, or its error.
func changes(cs []fs.Change, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return strings.Join(out, "\n")
}

func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustNotExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("%s: still there (%v)", p, err)
	}
}

// startDemo starts a session of the fixture image (demo:latest) with opt,
// on a new mountpoint (mountDir) of a new store (openStore), skipping where
// FUSE cannot work. The test's cleanup closes it, failing on an error, before
// the mountpoint and the store are checked; a test may close it first.
func startDemo(t testing.TB, opt session.Options) (*layerstore.Store, string, *session.Session) {
	t.Helper()
	needFUSE(t)
	st := openStore(t)
	dir := mountDir(t)
	s, err := session.Start(context.Background(), st, "demo", dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close the session on %s: %v", dir, err)
		}
	})
	return st, dir, s
}
