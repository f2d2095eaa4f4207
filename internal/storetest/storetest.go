// Package storetest opens layer stores for tests and checks them when the
// test ends: every test that opens a store ends by running the store's
// checker on it, contents and all, and fails on any problem or garbage.
//
// layerstore's own in-package tests cannot import it (the import would be a
// cycle); they keep the one helper of their own in layerstore/helpers_test.go.
package storetest

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/layerstore/imagefmt"
	"github.com/strata-dev/strata/transfer"
)

// Open opens a new, empty store in a temporary directory with the default
// options; Check runs on it when the test ends.
func Open(t testing.TB) *layerstore.Store {
	t.Helper()
	return OpenAt(t, filepath.Join(t.TempDir(), "store"), nil)
}

// OpenAt opens the store at root with opts (nil: the defaults); Check runs
// on it when the test ends.
func OpenAt(t testing.TB, root string, opts *layerstore.Options) *layerstore.Store {
	t.Helper()
	s, err := layerstore.Open(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Check(t, s)
		s.Close()
	})
	return s
}

// Root returns the directory for a store that something else makes (the
// CLI, another process); when the test ends, CheckRoot checks it.
func Root(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "store")
	t.Cleanup(func() { CheckRoot(t, root) })
	return root
}

// Check runs the checker with contents on s now and fails t on every problem
// and every piece of garbage it reports. The report is nil if Check failed.
func Check(t testing.TB, s *layerstore.Store) *layerstore.CheckReport {
	t.Helper()
	r := CheckProblems(t, s)
	if r != nil {
		for _, g := range r.Garbage {
			t.Errorf("check %s: garbage: %s", s.Root(), g)
		}
	}
	return r
}

// CheckProblems is Check for where garbage is allowed (after a kill, GC's
// to remove): it fails t on every problem and leaves the garbage to the
// caller.
func CheckProblems(t testing.TB, s *layerstore.Store) *layerstore.CheckReport {
	t.Helper()
	r, err := s.Check(true)
	if err != nil {
		t.Errorf("check %s: %v", s.Root(), err)
		return nil
	}
	for _, p := range r.Problems {
		t.Errorf("check %s: problem: %v", s.Root(), p)
	}
	return r
}

// CheckRoot opens the store at root, checks it as Check does and closes it.
// A root that was never made has nothing to check.
func CheckRoot(t testing.TB, root string) {
	t.Helper()
	if _, err := os.Stat(root); err != nil {
		return
	}
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Errorf("check %s: %v", root, err)
		return
	}
	defer s.Close()
	Check(t, s)
}

// Load stores every image of the archive at path (any format imagefmt
// reads) through transfer.Load, as `strata load` does; it fails t on error.
func Load(t testing.TB, s *layerstore.Store, path string) []layerstore.Image {
	t.Helper()
	imgs, err := LoadArchive(s, path)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

// LoadArchive is Load for where no test is at hand (a child process).
func LoadArchive(s *layerstore.Store, path string) ([]layerstore.Image, error) {
	a, err := imagefmt.Open(path)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return transfer.Load(context.Background(), s, a.Images(), transfer.LoadOptions{From: path})
}

// CheckLayers fails t unless every layer of img comes back from s byte for
// byte: LayerTar's sha256 is the layer's diffID.
func CheckLayers(t testing.TB, s *layerstore.Store, img layerstore.Image) {
	t.Helper()
	for _, d := range img.Layers {
		rc, err := s.LayerTar(d)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("layer %s: %v", d, err)
		}
		if got := digest.NewDigest(digest.SHA256, h); got != d {
			t.Errorf("layer %s reads back as %s", d, got)
		}
	}
}

// WhileGC runs work for each of workers goroutines (given its index) while
// GC runs on s over and over, until every one has returned: the race of a
// lease, a mount or a session with GC. It fails t on every error, of a
// worker or of GC, and returns how many times GC ran.
func WhileGC(t testing.TB, s *layerstore.Store, workers int, work func(w int) error) int {
	t.Helper()
	stop := make(chan struct{})
	gcDone := make(chan error, 1)
	gcs := 0
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.GC(); err != nil {
				gcDone <- err
				return
			}
			gcs++
		}
	}()
	errs := make(chan error, workers)
	for w := range workers {
		go func() { errs <- work(w) }()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	if err := <-gcDone; err != nil {
		t.Errorf("gc: %v", err)
	}
	return gcs
}
