package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// upperInos returns how many upper inodes the mount maps to inode numbers.
func (u *union) upperInos() int {
	u.inoMu.RLock()
	defer u.inoMu.RUnlock()
	return len(u.inos)
}

// TestFS_InoMap_Churn: a mount that makes and removes files for a long time
// keeps no entry of its upper inode map for a file once it is gone (no
// name, and the kernel forgot it), while a file with a name left, or one
// still open, keeps its inode number.
func TestFS_InoMap_Churn(t *testing.T) {
	img := baseImage(t)
	// ext4 gives a freed inode number to the next file it makes, which
	// hides a stale entry under a new one; tmpfs (like btrfs) never reuses
	// one, so every file ever made would stay in the map.
	for _, o := range []mountOpts{{}, {tmpfsUpper: true}, {tmpfsUpper: true, passthrough: true}} {
		t.Run(fmt.Sprintf("tmpfs=%v,passthrough=%v", o.tmpfsUpper, o.passthrough), func(t *testing.T) {
			m := mountImage(t, img, o)
			u := m.srv.u
			if err := os.Mkdir(m.p("tmp/churn"), 0o755); err != nil {
				t.Fatal(err)
			}
			base := u.upperInos()

			// Files, directories and rename victims, made and removed: 5 inodes
			// every 4 steps.
			const workers, each = 4, 64
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						p := m.p(fmt.Sprintf("tmp/churn/%d-%d", w, i))
						var err error
						switch i % 4 {
						case 0, 1:
							if err = os.WriteFile(p, []byte("x"), 0o644); err == nil {
								err = os.Remove(p)
							}
						case 2:
							if err = os.Mkdir(p, 0o755); err == nil {
								err = os.Remove(p)
							}
						case 3: // a file replaced by a rename, then removed
							if err = os.WriteFile(p, []byte("old"), 0o644); err == nil {
								err = os.WriteFile(p+".new", []byte("new"), 0o644)
							}
							if err == nil {
								err = os.Rename(p+".new", p)
							}
							if err == nil {
								err = os.Remove(p)
							}
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}

			// A name left keeps the inode and its number; an unlinked file
			// still open keeps it until closed.
			if err := os.WriteFile(m.p("tmp/churn/a"), []byte("a"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(m.p("tmp/churn/a"), m.p("tmp/churn/b")); err != nil {
				t.Fatal(err)
			}
			ino := mustLstat(t, m.p("tmp/churn/a")).Ino
			if err := os.Remove(m.p("tmp/churn/a")); err != nil {
				t.Fatal(err)
			}
			open, err := os.OpenFile(m.p("tmp/churn/open"), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer open.Close()
			openIno := mustLstat(t, m.p("tmp/churn/open")).Ino
			if err := os.Remove(m.p("tmp/churn/open")); err != nil {
				t.Fatal(err)
			}

			// The kernel forgets a removed inode once nothing holds it.
			const slack = 16 // b, open, and what the kernel has not forgotten yet
			deadline := time.Now().Add(10 * time.Second)
			for u.upperInos() > base+slack {
				if time.Now().After(deadline) {
					t.Fatalf("after %d files made and removed the upper inode map has %d entries, want at most %d+%d", 5*workers*each/4, u.upperInos(), base, slack)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if got := mustLstat(t, m.p("tmp/churn/b")).Ino; got != ino {
				t.Errorf("the other name of a removed hard link: inode %d, want %d", got, ino)
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(open.Fd()), &st); err != nil || st.Ino != openIno {
				t.Errorf("an unlinked file still open: fstat inode %d, %v; want %d", st.Ino, err, openIno)
			}
			if _, err := open.WriteAt([]byte("still here"), 0); err != nil {
				t.Errorf("write to an unlinked file still open: %v", err)
			}
			before := u.upperInos()
			open.Close()
			waitFor(t, "the closed unlinked file's entry gone", func() bool { return u.upperInos() < before })
			ents, err := os.ReadDir(m.p("tmp/churn"))
			if err != nil || len(ents) != 1 || ents[0].Name() != "b" {
				t.Errorf("tmp/churn: %v %v, want b alone", ents, err)
			}
			if b, err := os.ReadFile(filepath.Join(m.upper, "tmp/churn/b")); err != nil || string(b) != "a" {
				t.Errorf("upper tmp/churn/b: %q %v", b, err)
			}
		})
	}
}

// TestFS_InoMap_PinFails: a file removed while the kernel holds its node,
// when the server cannot open the descriptor that keeps it (EMFILE here),
// keeps its entry in the upper inode map, as lostName promises for a node
// the kernel knows: the pin's failure dropped it.
func TestFS_InoMap_PinFails(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	u := m.srv.u
	p := m.p("tmp/held")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p) // the kernel holds the node
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ust := mustLstat(t, filepath.Join(m.upper, "tmp/held"))
	ino, ok := u.knownIno(&ust)
	if !ok {
		t.Fatal("tmp/held has no inode number")
	}
	// The server runs in this process: with no descriptor left to open,
	// the unlink's pin fails and the unlink itself does not (tmp's
	// descriptor is cached since the write).
	free, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0) // the lowest number free
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(free)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(free)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	err = unix.Unlink(p)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("unlink with no descriptor to spare: %v", err)
	}
	if got, ok := u.knownIno(&ust); !ok || got != ino {
		t.Errorf("upper inode %d after its unlink, open: mapped to %d (%v), want %d", ust.Ino, got, ok, ino)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Ino != ino {
		t.Errorf("fstat of the open file: ino %d, %v; want %d", st.Ino, err, ino)
	}
}
