package layerstore_test

import (
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
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	bolt "go.etcd.io/bbolt"
)

// TestStore_TwoOpeners: two Store handles on one root (two flocks, as two
// processes would hold) load, list and remove at once; the store stays clean.
func TestStore_TwoOpeners(t *testing.T) {
	dir := fixtures.Dir(t)
	root := t.TempDir()
	a := storetest.OpenAt(t, root, nil)
	b, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, s := range []*layerstore.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			formats := []string{"oci", "demo.docker.tar", "oci-zstd", "demo.oci.tar"}
			for j := 0; j < 4; j++ {
				if _, err := storetest.LoadArchive(s, filepath.Join(dir, formats[(i+j)%4])); err != nil {
					errs <- fmt.Errorf("store %d load %d: %w", i, j, err)
				}
				if _, err := s.Images(); err != nil {
					errs <- err
				}
				if j%2 == 1 {
					if _, err := s.Prune(true); err != nil {
						errs <- fmt.Errorf("store %d prune: %w", i, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStore_LockTimeout: a writer that cannot get the store in time fails
// with ErrLocked and says what to wait for.
func TestStore_LockTimeout(t *testing.T) {
	root := t.TempDir()
	s, err := layerstore.Open(root, &layerstore.Options{LockTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Another process holding the database open for writing.
	db, err := bolt.Open(filepath.Join(root, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Tag("x", "y")
	db.Close()
	if !errors.Is(err, layerstore.ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "another strata process") || !strings.Contains(err.Error(), root) {
		t.Errorf("message %q should name the store and the cause", err)
	}
	// With the holder gone the same call goes through (and fails for its own reason).
	if err := s.Tag("x", "y"); !errors.Is(err, layerstore.ErrNotFound) {
		t.Fatalf("after release: %v", err)
	}
}

// slowLayer is a layer blob whose reader stops half way until released.
type slowLayer struct {
	data    []byte
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

type readerFunc func([]byte) (int, error)

// GC, rm and prune from another handle wait for an import that is staging
// objects, and never remove what it counts on.
func TestStore_GC_DuringImport_Waits(t *testing.T) {
	root := t.TempDir()
	a := storetest.OpenAt(t, root, &layerstore.Options{LockTimeout: 10 * time.Second})
	b, err := layerstore.Open(root, &layerstore.Options{LockTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// an image holding content the import will find already stored
	if _, err := storeImage(t, a, "old:1", rtar(t, rfile("shared", "shared content"))); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 3<<20)
	l := &slowLayer{data: rtar(t, rfile("shared", "shared content"), rfile("big", big), rfile("small", "small")), reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := a.NewImage(context.Background(), layerstore.NewImageOptions{Names: []string{"new:1"}, Layers: []layerstore.NewLayer{{Open: l.open}}})
		done <- err
	}()
	<-l.reached
	if _, err := b.GC(); !errors.Is(err, layerstore.ErrLocked) {
		t.Errorf("gc during an import: %v, want ErrLocked", err)
	}
	if _, err := b.RemoveImage("old:1", false); !errors.Is(err, layerstore.ErrLocked) {
		t.Errorf("rm during an import: %v, want ErrLocked", err)
	}
	if _, err := b.Prune(true); !errors.Is(err, layerstore.ErrLocked) {
		t.Errorf("prune during an import: %v, want ErrLocked", err)
	}
	close(l.release)
	if err := <-done; err != nil {
		t.Fatalf("import: %v", err)
	}
	if _, err := b.RemoveImage("old:1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GC(); err != nil {
		t.Fatal(err)
	}
	_, tree, err := b.ImageTree("new:1")
	if err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, b, objectsOf(tree), true, "after rm of the other image and gc")
}

// Two handles add, tag, resolve, build trees, remove, prune and collect in
// loops; errors other than "no such image" and "in use" fail, and the store
// checks clean after, with nothing left that GC should have taken.
func TestStore_TwoHandles_Stress(t *testing.T) {
	root := t.TempDir()
	opts := &layerstore.Options{LockTimeout: 60 * time.Second}
	a := storetest.OpenAt(t, root, opts)
	b, err := layerstore.Open(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	pool := [][]byte{
		rtar(t, rdir("etc"), rfile("etc/common", "common"), rfile("bin/sh", "sh")),
		rtar(t, rfile("etc/common", "common"), rfile("a", "A")),
		rtar(t, rfile("b", "B"), rwh("bin", "sh"), rfile("big", strings.Repeat("b", 2<<20))),
		rtar(t, ropq("etc"), rfile("etc/new", "common"), rfile("c", "C")),
	}
	iters := 12
	if testing.Short() {
		iters = 4
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	tolerated := func(err error) bool {
		return err == nil || errors.Is(err, layerstore.ErrNotFound) || errors.Is(err, layerstore.ErrInUse)
	}
	worker := func(name string, fn func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < iters; i++ {
				if err := fn(i); !tolerated(err) {
					errs <- fmt.Errorf("%s %d: %w", name, i, err)
				}
			}
		}()
	}
	worker("import-a", func(i int) error {
		_, err := storeImage(t, a, fmt.Sprintf("x:%d", i%3), pool[0], pool[1+i%3])
		return err
	})
	worker("import-b", func(i int) error {
		_, err := storeImage(t, b, fmt.Sprintf("y:%d", i%2), pool[i%4:]...)
		return err
	})
	worker("rm-b", func(i int) error {
		_, err := b.RemoveImage(fmt.Sprintf("x:%d", i%3), i%2 == 0)
		return err
	})
	worker("tree-a", func(i int) error {
		_, tr, err := a.ImageTree(fmt.Sprintf("x:%d", (i+1)%3))
		if err == nil && tr.Len() < 2 {
			return fmt.Errorf("tree of %d entries", tr.Len())
		}
		if err := a.Tag(fmt.Sprintf("y:%d", i%2), fmt.Sprintf("z:%d", i%2)); !tolerated(err) {
			return err
		}
		return err
	})
	worker("prune-gc-a", func(i int) error {
		if i%3 == 0 {
			_, err := a.Prune(i%2 == 0)
			return err
		}
		_, err := a.GC()
		return err
	})
	worker("check-b", func(i int) error {
		// Check reads under the shared bbolt lock; what it reports mid-way
		// must already hold (garbage aside).
		r, err := b.Check(false)
		if err != nil {
			return err
		}
		for _, p := range r.Problems {
			return fmt.Errorf("check mid-way: %s", p)
		}
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := a.GC(); err != nil {
		t.Fatal(err)
	}
	r := storetest.Check(t, b)
	if r == nil {
		return
	}
	imgs, err := a.Images()
	if err != nil {
		t.Fatal(err)
	}
	chains := map[digest.Digest]bool{}
	for _, img := range imgs {
		chains[img.ChainID] = true
		_, tr, err := a.ImageTree(string(img.ID))
		if err != nil {
			t.Fatal(err)
		}
		objectsPresent(t, a, objectsOf(tr), true, "after the stress")
	}
	if r.Trees > len(chains) {
		t.Errorf("%d trees for %d chains after gc", r.Trees, len(chains))
	}
}

// ImageTree racing RemoveImage: it returns a tree or "not found", and a tree
// it builds for an image removed meanwhile is collected by the next GC.
func TestStore_ImageTree_RacingRemove(t *testing.T) {
	root := t.TempDir()
	a := storetest.OpenAt(t, root, nil)
	b, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	l1 := rtar(t, rfile("base", "base"))
	// keep:1 holds l1 in a longer chain, so a tree for [l1] alone can be rebuilt
	if _, err := storeImage(t, a, "keep:1", l1, rtar(t, rfile("top", "top"))); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := storeImage(t, a, "victim:1", l1); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, tr, err := a.ImageTree("victim:1")
			if err != nil && !errors.Is(err, layerstore.ErrNotFound) {
				t.Errorf("ImageTree: %v", err)
			}
			if err == nil {
				if _, ok := tr.Lookup("base"); !ok {
					t.Errorf("tree without base")
				}
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := b.RemoveImage("victim:1", false); err != nil && !errors.Is(err, layerstore.ErrNotFound) {
				t.Errorf("rm: %v", err)
			}
		}()
		wg.Wait()
	}
	if _, err := a.GC(); err != nil {
		t.Fatal(err)
	}
	r := storetest.Check(t, a)
	if r != nil && r.Trees != 1 || r.Images != 1 {
		t.Errorf("%d images, %d trees after gc; want 1 and 1", r.Images, r.Trees)
	}
}

// isOpen reports whether this process has path open (Check hashing it).
func isOpen(path string) bool {
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}

// `strata check` in one process while `strata rmi` runs in another: the
// checker must not report the removal as corruption.
func TestStore_Check_DuringRemove_NoProblem(t *testing.T) {
	root := t.TempDir()
	a := storetest.OpenAt(t, root, nil)
	b, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A big object to keep Check busy hashing, and a small one of another
	// image whose digest sorts after it (Check hashes in digest order).
	big := bytes.Repeat([]byte("0123456789abcdef"), 24<<20/16)
	bigD := digest.FromBytes(big)
	var small string
	for i := 0; ; i++ {
		small = fmt.Sprintf("small %d", i)
		if digest.FromString(small) > bigD {
			break
		}
	}
	if _, err := storeImage(t, a, "big:1", rtar(t, rfile("big", string(big)))); err != nil {
		t.Fatal(err)
	}
	if _, err := storeImage(t, a, "small:1", rtar(t, rfile("small", small))); err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   *layerstore.CheckReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := a.Check(true)
		done <- result{r, err}
	}()
	bigPath := a.ObjectPath(bigD)
	deadline := time.Now().Add(20 * time.Second)
	for !isOpen(bigPath) {
		if time.Now().After(deadline) {
			t.Fatal("check never opened the big object")
		}
		time.Sleep(time.Millisecond)
	}
	// Check has read bbolt and listed objects/; it is hashing. Now rmi.
	if _, err := b.RemoveImage("small:1", false); err != nil && !errors.Is(err, layerstore.ErrLocked) {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	for _, p := range res.r.Problems {
		t.Errorf("check concurrent with rmi: %s", p)
	}
}

func (l *slowLayer) open() (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(bytes.NewReader(l.data[:len(l.data)/2]), readerFunc(func(p []byte) (int, error) {
		l.once.Do(func() { close(l.reached); <-l.release })
		return 0, io.EOF
	}), bytes.NewReader(l.data[len(l.data)/2:]))), nil
}

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
