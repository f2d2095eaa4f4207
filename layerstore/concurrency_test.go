package layerstore_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
