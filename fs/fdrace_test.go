package fs

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFS_UnlinkedFdRace: the attributes of an unlinked file come from a
// descriptor of one of its open handles. A handle released meanwhile must
// not close that descriptor under the request using it, nor may its number,
// reused by another open of the server, answer for another file.
func TestFS_UnlinkedFdRace(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	const size = 12345
	a := m.p("tmp/a")
	if err := os.WriteFile(a, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	again := fmt.Sprintf("/proc/self/fd/%d", fa.Fd())
	for i := range 4 {
		if err := os.WriteFile(m.p(fmt.Sprintf("tmp/b%d", i)), []byte("other"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	churn := func(p string) {
		defer wg.Done()
		for !stop.Load() {
			f, err := os.Open(p)
			if err != nil {
				errs <- err
				return
			}
			f.Close()
		}
	}
	// Handles of a come and go; other files' opens take the numbers freed.
	for range 3 {
		wg.Add(1)
		go churn(again)
	}
	for i := range 2 {
		wg.Add(1)
		go churn(m.p(fmt.Sprintf("tmp/b%d", i)))
	}
	var stats, bad int
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && bad == 0 && len(errs) == 0 {
		var st unix.Statx_t
		err := unix.Statx(unix.AT_FDCWD, again, unix.AT_STATX_FORCE_SYNC, unix.STATX_BASIC_STATS, &st)
		stats++
		if err != nil {
			t.Errorf("statx of the unlinked file (stat %d): %v", stats, err)
			bad++
		} else if st.Size != size {
			t.Errorf("statx of the unlinked file (stat %d): size %d, want %d: another file's attributes", stats, st.Size, size)
			bad++
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d stats", stats)
}
