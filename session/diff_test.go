package session_test

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/strata-dev/strata/session"
)

// Diff's changes outlive the tree they were read against: session.Diff
// unmaps the tree file before it returns, and the deleted children of an
// opaque directory are named by the tree's own strings. Reading them
// afterwards, with the memory handed back and reused, gives the same
// changes (it crashed or gave garbage while the paths pointed into the
// mapping).
func TestSession_Diff_OpaqueDir_AfterTreeClosed(t *testing.T) {
	_, dir, s := startDemo(t, session.Options{})
	// /etc replaced by a directory of its own: opaque over the lower one.
	if err := os.RemoveAll(filepath.Join(dir, "etc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "etc/new"), "new\n")
	changes, err := s.Diff()
	if err != nil {
		t.Fatal(err)
	}
	// The tree's pages are gone; make the allocator reuse what it can.
	for range 3 {
		runtime.GC()
		_ = make([]byte, 64<<20)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	lower, err := os.ReadDir(filepath.Join(rootfs(t), "etc"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"C /etc"}
	for _, e := range lower {
		want = append(want, "D /etc/"+e.Name())
	}
	want = append(want, "A /etc/new")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Diff over an opaque /etc, read after the tree is closed:\n got %q\nwant %q", got, want)
	}
}
