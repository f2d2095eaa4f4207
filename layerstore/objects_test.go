package layerstore

// Objects: one record and one reference per layer naming the content, read
// straight from bbolt, and the crash windows of publishing them (simulated at
// the exact step).

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The same content in many places is one object with one reference per
// layer, however many entries of the layer name it.
func TestObjects_Refcount_OnePerLayer(t *testing.T) {
	s := newTestStore(t)
	body := "shared content"
	d := sha([]byte(body))
	l1 := makeTar(t, tarEntry{name: "a", body: body}, tarEntry{name: "b", body: body}, tarEntry{name: "c", typ: tar.TypeLink, link: "a"})
	l2 := makeTar(t, tarEntry{name: "x/a", body: body}, tarEntry{name: "only2", body: "two"})
	l3 := makeTar(t, tarEntry{name: "y", body: body})
	// two layers of one image name it
	if _, err := importLayers(t, s, "one:1", l1, l2); err != nil {
		t.Fatal(err)
	}
	if got := objectRefs(t, s)[d]; got != 2 {
		t.Fatalf("refs after an image of two layers naming it = %d, want 2", got)
	}
	// a second image shares layer l1 and adds l3
	if _, err := importLayers(t, s, "two:1", l1, l3); err != nil {
		t.Fatal(err)
	}
	if got := objectRefs(t, s)[d]; got != 3 {
		t.Fatalf("refs with a shared layer and a third layer = %d, want 3", got)
	}
	checkOK(t, s, "two images")
	if _, err := s.RemoveImage("one:1", false); err != nil {
		t.Fatal(err)
	}
	if got := objectRefs(t, s)[d]; got != 2 {
		t.Fatalf("refs after removing the first image = %d, want 2 (l1 still held by two:1)", got)
	}
	if _, err := os.Stat(s.ObjectPath(sha([]byte("two")))); !os.IsNotExist(err) {
		t.Errorf("object only l2 held survives its image: %v", err)
	}
	_, tree, err := s.ImageTree("two:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b", "c", "y"} {
		e, ok := tree.Lookup(p)
		if !ok {
			t.Fatalf("%s missing", p)
		}
		if _, err := os.Stat(s.ObjectPath(e.Digest)); err != nil {
			t.Errorf("%s: object gone while two:1 holds it: %v", p, err)
		}
	}
	if _, err := s.RemoveImage("two:1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	mustEmpty(t, s, "after removing both")
}

// A crash after the objects are published and before the bbolt transaction
// commits: objects/ holds files no record names, tmp/ holds the staging dir.
func TestObjects_CrashAfterPublish_LeavesGarbage(t *testing.T) {
	s := newTestStore(t)
	keep, err := importLayers(t, s, "keep:1", makeTar(t, tarEntry{name: "k", body: "keep"}))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("B", smallFile+1)
	layer := makeTar(t, tarEntry{name: "k", body: "keep"}, tarEntry{name: "new", body: "new content"}, tarEntry{name: "big", body: big})
	lk, err := s.lock(false)
	if err != nil {
		t.Fatal(err)
	}
	_, st, err := s.ingestLayers(context.Background(), []LayerBlob{{Size: -1, Open: opener(layer)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = st // the process dies here: no commit, no discard
	lk.unlock()
	for _, c := range []string{"new content", big} {
		if _, err := os.Stat(s.ObjectPath(sha([]byte(c)))); err != nil {
			t.Fatalf("published object not in objects/: %v", err)
		}
	}
	r := checkOK(t, s, "after the crash")
	if len(r.Garbage) != 3 { // two objects and the staging dir
		t.Errorf("garbage %v, want two objects and one staging dir", r.Garbage)
	}
	if imgs, _ := s.Images(); len(imgs) != 1 || imgs[0].ID != keep.ID {
		t.Errorf("half an import is visible: %+v", imgs)
	}
	g, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if g.Objects != 2 || g.Staging != 1 {
		t.Errorf("gc %+v, want 2 objects and 1 staging dir", g)
	}
	if _, err := os.Stat(s.ObjectPath(sha([]byte("keep")))); err != nil {
		t.Errorf("gc removed a committed object: %v", err)
	}
	r = checkOK(t, s, "after gc")
	if len(r.Garbage) != 0 {
		t.Errorf("garbage after gc: %v", r.Garbage)
	}
	if _, err := importLayers(t, s, "again:1", layer); err != nil {
		t.Fatalf("import after the crash: %v", err)
	}
}

// A crash in the middle of publish: some objects renamed, some still staged.
func TestObjects_CrashMidPublish_LeavesGarbage(t *testing.T) {
	s := newTestStore(t)
	st, err := s.newStaging()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		st.addSmall([]byte(fmt.Sprintf("object %d", i)))
	}
	if err := st.wait(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for d, name := range st.pending {
		if n == 5 {
			break
		}
		if err := os.Rename(name, s.ObjectPath(d)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	r := checkOK(t, s, "mid-publish")
	if len(r.Garbage) != 6 {
		t.Errorf("garbage %v, want 5 objects and the staging dir", r.Garbage)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	mustEmpty(t, s, "after gc")
}

// Leftovers in tmp/ of every shape a crash can leave.
func TestObjects_TmpLeftovers_AreGarbage(t *testing.T) {
	s := newTestStore(t)
	os.MkdirAll(filepath.Join(s.TmpDir(), "import-1", "sub"), 0o700)
	os.WriteFile(filepath.Join(s.TmpDir(), "import-1", "o1"), []byte("partial"), 0o400)
	os.WriteFile(filepath.Join(s.TmpDir(), "strata-export-9"), []byte("x"), 0o400)
	os.MkdirAll(filepath.Join(s.TmpDir(), "ro"), 0o500) // a read-only dir must not stop GC
	os.WriteFile(filepath.Join(s.TmpDir(), "ro", "x"), nil, 0o400)
	os.Chmod(filepath.Join(s.TmpDir(), "ro"), 0o500)
	r := checkOK(t, s, "with leftovers")
	if len(r.Garbage) != 3 {
		t.Errorf("garbage %v, want 3 entries", r.Garbage)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if left, _ := readDirNames(s.TmpDir()); len(left) != 0 {
		t.Errorf("tmp/ after gc: %v", left)
	}
}

// Two resolves at once (two layers of one import ending together, or a
// full maybe beside a layer's end) look up the same content: the one that
// finds it gone from maybe leaves it to the other. It staged an empty file
// in its place, published with the content's size.
func TestObjects_OverlappingResolves_StageOnce(t *testing.T) {
	s := newTestStore(t)
	body := []byte("left by a crash, shared by two layers")
	d := sha(body)
	for i := 0; i < 200; i++ {
		if err := os.WriteFile(s.ObjectPath(d), body, 0o400); err != nil {
			t.Fatal(err)
		}
		st, err := s.newStaging()
		if err != nil {
			t.Fatal(err)
		}
		st.addSmall(body)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); errs[j] = st.resolve() }()
		}
		wg.Wait()
		if err := st.wait(); err != nil {
			t.Fatal(err)
		}
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		name, ok := st.pending[d]
		if !ok {
			t.Fatalf("round %d: the orphan's content is not staged (known %v)", i, st.known[d])
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("round %d: staged %q, want %q", i, got, body)
		}
		if err := st.discard(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(s.ObjectPath(d)); err != nil {
			t.Fatal(err)
		}
	}
}

// A stored layer read again (check --contents) hashes its large files and
// writes nothing: a copy in tmp/ of a file larger than the free space
// filled the disk. A stream short of its size is still an error.
func TestObjects_Replay_WritesNothing(t *testing.T) {
	s := newTestStore(t)
	st, err := s.newStaging()
	if err != nil {
		t.Fatal(err)
	}
	defer st.discard()
	st.replay = true
	body := bytes.Repeat([]byte("large file "), 3*smallFile/10)
	d, err := st.add(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	if d != sha(body) {
		t.Errorf("digest %s, want %s", d, sha(body))
	}
	if _, err := st.add(bytes.NewReader(body[:100]), int64(len(body))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short stream: %v, want io.ErrUnexpectedEOF", err)
	}
	if err := st.wait(); err != nil {
		t.Fatal(err)
	}
	if names, err := os.ReadDir(st.dir); err != nil || len(names) != 0 {
		t.Errorf("staging directory holds %v (%v), want nothing", names, err)
	}
}
