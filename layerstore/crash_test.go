package layerstore_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// TestMain lets the test binary act as a loader child for the crash test.
func TestMain(m *testing.M) {
	if root := os.Getenv("STRATA_CRASH_CHILD_TREES"); root != "" {
		treeCrashChild(root, os.Getenv("STRATA_CRASH_CHILD_ARCHIVE"))
		return
	}
	if spec := os.Getenv("STRATA_CRASH_CHILD_RMMOUNT"); spec != "" {
		root, id, _ := strings.Cut(spec, "\n")
		s, err := layerstore.Open(root, nil)
		if err != nil || s.RemoveMount(id) != nil {
			os.Exit(2)
		}
		os.Exit(0)
	}
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

// treeCrashChild stores image after image on the fixture image, each with a
// top layer of its own (so a new tree file every time, built on the base's
// mapped tree), and removes every other one (so tree files go too).
func treeCrashChild(root, archive string) {
	s, err := layerstore.Open(root, nil)
	if err != nil {
		os.Exit(2)
	}
	if _, err := s.ResolveImage("demo:latest"); err != nil {
		if _, err := storetest.LoadArchive(s, archive); err != nil {
			os.Exit(3)
		}
	}
	base, err := s.ResolveImage("demo:latest")
	if err != nil {
		os.Exit(4)
	}
	for i := 0; ; i++ {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for j := 0; j < 3000; j++ {
			name := fmt.Sprintf("gen/%d/%d/f%d", i, j%40, j)
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: 1}) // one object for all: the tree is the work
			tw.Write([]byte{byte(i)})
		}
		tw.Close()
		data := buf.Bytes()
		ref := fmt.Sprintf("gen:%d", i)
		_, err := s.NewImage(context.Background(), layerstore.NewImageOptions{
			Base:   &base,
			Layers: []layerstore.NewLayer{{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}},
			Names:  []string{ref},
		})
		if err == nil && i%2 == 1 {
			s.RemoveImage(ref, false)
		}
	}
}

// TestStore_Crash_TreeFiles kills a process that stores and removes images
// (each a new tree file) at random moments: every kill leaves a store that
// checks clean, whose leftovers GC removes, and whose trees all map.
func TestStore_Crash_TreeFiles(t *testing.T) {
	archive := filepath.Join(fixtures.Dir(t), "oci")
	seed := time.Now().UnixNano()
	if v := os.Getenv("STRATA_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Logf("seed %d (STRATA_SEED replays)", seed)
	rnd := rand.New(rand.NewSource(seed))
	root := t.TempDir()
	rounds := 8
	if testing.Short() {
		rounds = 4
	}
	for i := 0; i < rounds; i++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "STRATA_CRASH_CHILD_TREES="+root, "STRATA_CRASH_CHILD_ARCHIVE="+archive)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(300+rnd.Intn(1500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		s, err := layerstore.Open(root, nil)
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", i, err)
		}
		r, err := s.Check(i%2 == 0)
		if err != nil {
			t.Fatalf("round %d: check: %v", i, err)
		}
		for _, p := range r.Problems {
			t.Errorf("round %d: after kill: %s", i, p)
		}
		imgs, err := s.Images()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d images, %d trees, garbage %d", i, len(imgs), r.Trees, len(r.Garbage))
		for _, img := range imgs {
			_, tree, err := s.ImageTree(string(img.ID))
			if err != nil {
				t.Errorf("round %d: tree of %s: %v", i, img.ID, err)
				continue
			}
			if _, ok := tree.Lookup("etc/passwd"); !ok {
				t.Errorf("round %d: tree of %s lacks the base's etc/passwd", i, img.ID)
			}
			tree.Close()
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
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	r, _ := s.Check(true)
	for _, p := range r.Problems {
		t.Error(p)
	}
	if len(r.Garbage) != 0 {
		t.Errorf("garbage after gc: %v", r.Garbage)
	}
}

// TestStore_Crash_RemoveMount kills a RemoveMount of a kept lease (a
// stopped container's top layer of 5,000 files) as soon as it has begun
// to delete the directory: what is left is the lease with its whole top
// layer, or no lease and a directory no lease names, which check reports
// and GC removes; never a lease whose top layer is half gone.
func TestStore_Crash_RemoveMount(t *testing.T) {
	const dirs, files = 50, 100
	root := t.TempDir()
	s := storetest.OpenAt(t, root, nil)
	img, err := storeImage(t, s, "img:1", rtar(t, rfile("f", "x")))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddMount(layerstore.MountRecord{ID: "kept", Image: img.ID, Dir: "/nowhere", Keep: true}); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(s.MountDir("kept"), "upper")
	for d := range dirs {
		sub := filepath.Join(upper, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range files {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d", f)), []byte("top layer"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "STRATA_CRASH_CHILD_RMMOUNT="+root+"\n"+"kept")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	var waitErr error
	for done := false; !done; {
		select {
		case waitErr = <-exited:
			done = true
			continue
		default:
		}
		if ents, err := os.ReadDir(upper); err != nil || len(ents) < dirs {
			child.Process.Signal(syscall.SIGKILL)
			waitErr = <-exited
			done = true
			continue
		}
		time.Sleep(100 * time.Microsecond)
	}
	t.Logf("the removal: %v", waitErr)
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the removal ended %v, not killed mid-way: the test saw no crash", waitErr)
	}
	if r := storetest.CheckProblems(t, s); r == nil {
		t.FailNow()
	}
	ms, err := s.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 1 {
		n := 0
		filepath.WalkDir(upper, func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		if n != dirs*files {
			t.Errorf("the lease is kept with %d files of its top layer's %d", n, dirs*files)
		}
		if err := s.RemoveMount("kept"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.MountDir("kept")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the mount's directory after gc: %v", err)
	}
}
