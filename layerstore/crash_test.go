package layerstore_test

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// TestMain lets the test binary act as a loader child for the crash test.
func TestMain(m *testing.M) {
	if root := os.Getenv("STRATA_CRASH_CHILD_ROOT"); root != "" {
		crashChild(root, os.Getenv("STRATA_CRASH_CHILD_ARCHIVE"))
		return
	}
	os.Exit(m.Run())
}

func crashChild(root, archive string) {
	s, err := layerstore.Open(root, nil)
	if err != nil {
		os.Exit(2)
	}
	for i := 0; ; i++ {
		// load, remove, load again: every kind of transaction gets killed somewhere
		storetest.LoadArchive(s, archive)
		if i%2 == 1 {
			s.Prune(true)
		}
	}
}

// TestStore_Crash kills a loader with SIGKILL at random moments; after each
// kill the store must check clean, and a load must then succeed.
func TestStore_Crash(t *testing.T) {
	dir := fixtures.Dir(t)
	archives := []string{"oci", "demo.docker.tar", "oci-zstd"}
	seed := time.Now().UnixNano()
	if v := os.Getenv("STRATA_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Logf("seed %d (STRATA_SEED replays)", seed)
	rnd := rand.New(rand.NewSource(seed))
	root := t.TempDir()
	rounds := 12
	if testing.Short() {
		rounds = 4
	}
	for i := 0; i < rounds; i++ {
		archive := filepath.Join(dir, archives[i%len(archives)])
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "STRATA_CRASH_CHILD_ROOT="+root, "STRATA_CRASH_CHILD_ARCHIVE="+archive)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rnd.Intn(600)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		s, err := layerstore.Open(root, nil)
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", i, err)
		}
		if r := storetest.CheckProblems(t, s); r == nil || !r.OK() {
			t.Errorf("round %d: problems after the kill", i)
		}
		if i%3 == 2 {
			if _, err := s.GC(); err != nil {
				t.Fatalf("round %d: gc: %v", i, err)
			}
			if r, _ := s.Check(false); len(r.Garbage) != 0 {
				t.Errorf("round %d: garbage after gc: %v", i, r.Garbage)
			}
		}
	}
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	imgs := storetest.Load(t, s, filepath.Join(dir, "oci"))
	if len(imgs) != 1 {
		t.Fatalf("load after the crashes: %d images", len(imgs))
	}
	_, tree, err := s.ImageTree("demo:latest")
	if err != nil {
		t.Fatalf("tree after the crashes: %v", err)
	}
	if e, ok := tree.Lookup("usr/share/doc/demo/README"); !ok || e.Size == 0 {
		t.Fatalf("tree after the crashes lacks the top layer's README")
	}
	storetest.CheckProblems(t, s)
}
