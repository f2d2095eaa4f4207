package snapshotter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/storetest"
)

var sink []byte

// A serving snapshotter returns the memory it freed to the system, as the
// CLI's mount servers do: a node's resting snapshot mounts hold their live
// heap only, not what a walk of them once took.
func TestServe_ReturnsFreedMemory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := storetest.Open(t)
	sn, err := Open(ctx, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(errors.Join(err, sn.Close()))
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sn, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	if _, err := sn.Prepare(ctx, "a", "", nil); err != nil {
		t.Fatal(err)
	}
	// What serving a big walk leaves: 64 MiB freed, in the heap's pages.
	sink = make([]byte, 64<<20)
	for i := range sink {
		sink[i] = 1
	}
	sink = nil
	runtime.GC()
	var ms runtime.MemStats
	deadline := time.Now().Add(3 * trimInterval)
	for {
		runtime.ReadMemStats(&ms)
		kept := ms.HeapIdle - ms.HeapReleased
		if kept < 8<<20 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d MiB freed but kept from the system after %s", kept>>20, 3*trimInterval)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
