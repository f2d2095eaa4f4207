package session_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// mountOf is one mount of the many-mounts test: served here, or by a server
// process the test may kill.
type mountOf struct {
	dir  string
	id   string
	sess *session.Session // nil: served by cmd
	cmd  *exec.Cmd
	mark string // what this mount wrote
}

// Many mounts of one image, each with writes of its own: none sees another's
// writes, all map the one tree file, they unmount in any order, and a server
// killed with SIGKILL takes only its own mount down (session.Reap cleans it
// up; strata umount and gc do the same through Unmount and GC).
func TestSession_ManyMountsOfOneImage(t *testing.T) {
	needFUSE(t)
	st := openStore(t)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewSource(seed))
	const n = 12
	var ms []*mountOf
	t.Cleanup(func() {
		for _, m := range ms {
			if m.sess != nil {
				m.sess.Close()
			}
		}
	})
	for i := 0; i < n; i++ {
		m := &mountOf{dir: mountDir(t), mark: fmt.Sprintf("mount %d\n", i)}
		if i%4 == 3 { // some in server processes of their own
			m.cmd, m.id = startServer(t, st, m.dir, false)
		} else {
			s, err := session.Start(context.Background(), st, "demo", m.dir, session.Options{})
			if err != nil {
				t.Fatalf("mount %d: %v", i, err)
			}
			m.sess, m.id = s, s.ID()
		}
		ms = append(ms, m)
	}
	trees, err := os.ReadDir(filepath.Join(st.Root(), "trees"))
	if err != nil || len(trees) != 1 {
		t.Fatalf("tree files: %v %v, want the image's one", trees, err)
	}
	for i, m := range ms {
		mustWrite(t, filepath.Join(m.dir, "own"), m.mark)
		mustWrite(t, filepath.Join(m.dir, "etc", "motd"), m.mark) // copy-up of a lower file
		if i%2 == 0 {
			if err := os.Remove(filepath.Join(m.dir, "etc", "group")); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := walk(t, rootfs(t))
	check := func(m *mountOf, i int) {
		t.Helper()
		if got := mustRead(t, filepath.Join(m.dir, "own")); got != m.mark {
			t.Errorf("%s: own: %q, want %q", m.dir, got, m.mark)
		}
		if got := mustRead(t, filepath.Join(m.dir, "etc", "motd")); got != m.mark {
			t.Errorf("%s: etc/motd: %q, want %q", m.dir, got, m.mark)
		}
		got := walk(t, m.dir)
		for p := range want {
			if _, ok := got[p]; !ok && !(i%2 == 0 && p == "etc/group") {
				t.Errorf("%s: %s missing", m.dir, p)
			}
		}
		for p := range got {
			if _, ok := want[p]; !ok && p != "own" {
				t.Errorf("%s: %s is not the image's nor the mount's own", m.dir, p)
			}
		}
	}
	for i, m := range ms {
		check(m, i)
	}
	// One server killed: the others go on; Reap cleans up after it.
	var victim int
	for i, m := range ms {
		if m.cmd != nil {
			victim = i
			break
		}
	}
	kill(t, ms[victim].cmd)
	if _, err := os.ReadFile(filepath.Join(ms[victim].dir, "own")); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("read in the killed mount: %v, want ENOTCONN", err)
	}
	for i, m := range ms {
		if i != victim {
			check(m, i)
		}
	}
	if err := session.Reap(st, ms[victim].id); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, st.MountDir(ms[victim].id))
	ms = append(ms[:victim], ms[victim+1:]...)
	// Unmount in a random order; those left still see their own.
	rnd.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	for len(ms) > 0 {
		m := ms[0]
		if m.sess != nil {
			if err := m.sess.Close(); err != nil {
				t.Fatal(err)
			}
		} else if err := session.Unmount(context.Background(), st, m.id, session.UnmountOptions{}); err != nil {
			t.Fatal(err)
		}
		mustNotExist(t, st.MountDir(m.id))
		ms = ms[1:]
		for _, o := range ms {
			if got := mustRead(t, filepath.Join(o.dir, "own")); got != o.mark {
				t.Errorf("%s after an unmount: own %q", o.dir, got)
			}
		}
	}
	if ids := leases(t, st); len(ids) != 0 {
		t.Errorf("leases left: %v", ids)
	}
}

// A mount's tree is mapped: it does not need the tree file's name, and an
// image removed (forced) while mounted keeps its tree until the lease goes,
// when the removal's sweep deletes the tree file.
func TestSession_TreeFileOfRemovedImage(t *testing.T) {
	st, dir, s := startDemo(t, session.Options{})
	names, err := os.ReadDir(filepath.Join(st.Root(), "trees"))
	if err != nil || len(names) != 1 {
		t.Fatalf("tree files: %v %v", names, err)
	}
	file := filepath.Join(st.Root(), "trees", names[0].Name())
	if _, err := st.RemoveImage("demo", true); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GC(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the lease no longer holds the tree file: %v", err)
	}
	// Away from its name, the tree still serves every lookup.
	aside := filepath.Join(t.TempDir(), "tree")
	if err := os.Rename(file, aside); err != nil {
		t.Fatal(err)
	}
	want := walk(t, rootfs(t))
	got := walk(t, dir)
	if err := os.Rename(aside, file); err != nil {
		t.Fatal(err)
	}
	for p := range want {
		if _, ok := got[p]; !ok {
			t.Errorf("%s missing from the mount of the removed image", p)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d entries, want %d", len(got), len(want))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tree file after the last lease went: %v, want removed", err)
	}
	if _, err := st.ResolveImage("demo"); !errors.Is(err, layerstore.ErrNotFound) {
		t.Errorf("image after removal: %v", err)
	}
}

// walk lists the paths under root (relative), with their type bits.
func walk(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if _, err := os.Lstat(p); err != nil {
			return err
		}
		out[strings.TrimPrefix(p, root+"/")] = d.Type()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
