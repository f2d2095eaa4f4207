package fs

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitRawReleased waits until the server has had every raw handle's RELEASE
// (the kernel sends it on its own time after close).
// waitFor waits up to 10 s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitRawReleased(t *testing.T, m *testMount) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.srv.u.rawOpens() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d raw handles still open after 10 s", m.srv.u.rawOpens())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Reading every file of a walked tree opens them raw: the contents are the
// bridge's, and no Inode is made but the hard-linked file's.
func TestFS_RawOpen_ReadLeavesNoInode(t *testing.T) {
	img := rawImage(t)
	for _, ro := range []bool{false, true} {
		t.Run(map[bool]string{false: "rw", true: "ro"}[ro], func(t *testing.T) {
			ref := mountRaw(t, img, ro, true)
			m := mountRaw(t, img, ro, false)
			walkAll(t, m.dir)
			m.srv.Trace(true)
			if got, want := contents(t, m.dir), contents(t, ref.dir); got != want {
				t.Errorf("contents:\n%s", lineDiff(got, want))
			}
			if n := m.srv.bridgeInodes(); n != 1 {
				t.Errorf("%d bridge Inodes after reading every file, want 1 (the hard-linked file)", n)
			}
			if n := traceOf(m, "OPEN"); n < 8 {
				t.Errorf("%d OPENs for reading every file", n)
			}
			waitRawReleased(t, m)
			// Read again, warm: the same.
			if got, want := contents(t, m.dir), contents(t, ref.dir); got != want {
				t.Errorf("warm contents:\n%s", lineDiff(got, want))
			}
			waitRawReleased(t, m)
		})
	}
}

// A write open of a file held open raw copies it up as before, and the
// reader sees what is written (as the bridge's handles do); on a mount with
// upper passthrough the raw handle counts as a cached open of the node, so
// the write open is not refused (EIO) and a second open joins the cached
// mode; once all are closed a new open passes through again.
func TestFS_RawOpen_WriteBeside(t *testing.T) {
	img := rawImage(t)
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "cached", true: "passthrough"}[pt], func(t *testing.T) {
			m := mountImage(t, img, mountOpts{passthrough: pt, trace: true})
			ro, err := os.Open(m.p("d/e/f"))
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			buf := make([]byte, 6)
			if _, err := ro.ReadAt(buf, 0); err != nil || string(buf) != "f data" {
				t.Fatalf("raw read: %q %v", buf, err)
			}
			if m.srv.u.rawOpens() != 1 || m.srv.bridgeInodes() != 0 {
				t.Fatalf("after a read-only open: %d raw handles, %d Inodes; want 1, 0", m.srv.u.rawOpens(), m.srv.bridgeInodes())
			}
			rw, err := os.OpenFile(m.p("d/e/f"), os.O_RDWR, 0)
			if err != nil {
				t.Fatalf("write open beside a raw reader: %v", err)
			}
			if _, err := rw.WriteAt([]byte("F DATA"), 0); err != nil {
				t.Fatal(err)
			}
			if pt {
				// The raw reader alone keeps the node's opens cached:
				// with rw released, rw2 must not be passed through.
				rel := traceOf(m, "RELEASE")
				rw.Close()
				waitFor(t, "rw's RELEASE", func() bool { return traceOf(m, "RELEASE") > rel })
			}
			rw2, err := os.OpenFile(m.p("d/e/f"), os.O_RDWR, 0)
			if err != nil {
				t.Fatalf("second open beside the raw reader: %v", err)
			}
			if _, err := rw2.ReadAt(buf, 0); err != nil || string(buf) != "F DATA" {
				t.Errorf("second handle reads %q %v", buf, err)
			}
			if _, err := ro.ReadAt(buf, 0); err != nil || string(buf) != "F DATA" {
				t.Errorf("the raw reader reads %q %v after the write, want F DATA", buf, err)
			}
			if _, err := ro.Stat(); err != nil {
				t.Errorf("fstat of the raw handle: %v", err)
			}
			rw.Close()
			rw2.Close()
			ro.Close()
			waitRawReleased(t, m)
			waitNoOpens(t, m, "d/e/f")
			if !pt || !m.srv.Passthrough() {
				return
			}
			m.srv.Trace(true)
			f, err := os.OpenFile(m.p("d/e/f"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "F DATA" {
				t.Errorf("read: %q %v", buf, err)
			}
			f.Close()
			if r := traceOf(m, "READ"); r != 0 {
				t.Errorf("the upper file opened alone sent %d READs, want none (passthrough)", r)
			}
		})
	}
}

// A raw handle stays right through what changes its file and its place:
// chmod (a metacopy), a rename of its directory (copied up whole), unlink.
func TestFS_RawOpen_ChangesWhileOpen(t *testing.T) {
	img := rawImage(t)
	m := mountImage(t, img, mountOpts{trace: true})
	f, err := os.Open(m.p("d/e/deep/er/z"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := os.Open(m.p("d/e/f"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	check := func(what string, h *os.File, want string, mode os.FileMode) {
		t.Helper()
		b := make([]byte, 64)
		n, err := h.ReadAt(b, 0)
		if string(b[:n]) != want {
			t.Errorf("%s: read %q %v, want %q", what, b[:n], err, want)
		}
		if st, err := h.Stat(); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: fstat %v %v, want mode %o", what, st, err, mode)
		}
		if off, err := unix.Seek(int(h.Fd()), 0, unix.SEEK_DATA); err != nil || off != 0 {
			t.Errorf("%s: SEEK_DATA %d %v", what, off, err)
		}
	}
	check("raw", f, "z", 0o644)
	if err := os.Chmod(m.p("d/e/deep/er/z"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("after chmod", f, "z", 0o600)
	if err := os.Rename(m.p("d"), m.p("moved")); err != nil {
		t.Fatal(err)
	}
	check("after renaming its directory", f, "z", 0o600)
	check("the other file after renaming its directory", g, "f data", 0o644)
	if err := os.Remove(m.p("moved/e/f")); err != nil {
		t.Fatal(err)
	}
	check("after unlink", g, "f data", 0o644)
	if err := os.WriteFile(m.p("moved/e/deep/er/z"), []byte("zz"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("after a write through the new path", f, "zz", 0o600)
	f.Close()
	g.Close()
	waitRawReleased(t, m)
}

// A raw handle is kept while the kernel drops every entry (it forgets the
// inode only once the file is closed); after that, nothing is held.
func TestFS_RawOpen_Forget(t *testing.T) {
	img := rawImage(t)
	m := mountRaw(t, img, false, false)
	run(t, m.dir, false, "ls", "-lR", m.dir)
	inos := map[string]uint64{}
	for _, p := range []string{"d", "d/e", "d/e/deep", "d/e/deep/er"} {
		inos[p] = mustLstat(t, m.p(p)).Ino
	}
	f, err := os.Open(m.p("d/e/deep/er/z"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	invalidate := func() {
		for _, e := range ents {
			m.srv.fuse.EntryNotify(1, e.Name())
		}
	}
	// Everything but z and the directories above it goes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		invalidate()
		if m.srv.rawHeld() <= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after invalidating every entry: %d raw nodes held, want z and its directories", m.srv.rawHeld())
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := make([]byte, 8)
	if n, err := f.ReadAt(b, 0); string(b[:n]) != "z" {
		t.Errorf("read after the FORGETs: %q %v", b[:n], err)
	}
	f.Close()
	// The root's entry "d" is gone already; the ones below it, which the
	// open file kept, go by their parents' node IDs, bottom up.
	chain := []string{"d/e/deep/er", "d/e/deep", "d/e", "d"}
	for {
		for i, p := range chain {
			name := "z"
			if i > 0 {
				name = filepath.Base(chain[i-1])
			}
			m.srv.fuse.EntryNotify(inos[p], name)
		}
		invalidate()
		if m.srv.rawHeld() == 0 && m.srv.bridgeInodes() == 0 && m.srv.u.rawOpens() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the close: %d raw nodes held, %d Inodes, %d raw handles", m.srv.rawHeld(), m.srv.bridgeInodes(), m.srv.u.rawOpens())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := mustRead(t, m.p("d/e/deep/er/z")); got != "z" {
		t.Errorf("z: %q", got)
	}
}

// cp of a lower file opened raw still copies in the kernel
// (copy_file_range through a bridge handle on the source): no byte of it
// is read or written through the server.
func TestFS_RawOpen_CopyFileRange(t *testing.T) {
	img := rawImage(t)
	m := mountImage(t, img, mountOpts{trace: true})
	m.srv.Trace(true)
	run(t, m.dir, false, "cp", "d/e/f", "copied")
	if c := traceOf(m, "COPY_FILE_RANGE"); c == 0 {
		t.Errorf("cp sent no COPY_FILE_RANGE")
	}
	for _, op := range []string{"READ", "WRITE"} {
		if c := traceOf(m, op); c != 0 {
			t.Errorf("cp of a lower file sent %d %ss, want none (copied in the kernel)", c, op)
		}
	}
	if got, err := os.ReadFile(m.p("copied")); err != nil || string(got) != "f data" {
		t.Errorf("the copy holds %q %v, want f data", got, err)
	}
	waitRawReleased(t, m)
}

// On a read-only passthrough mount a big file opens through the bridge,
// which gives the kernel its object to read itself (no READ reaches the
// server), and a small one opens raw (no Inode made).
func TestFS_RawOpen_ReadOnlyPassthrough(t *testing.T) {
	img := rawImage(t)
	m := mountImage(t, img, mountOpts{readOnly: true, passthrough: true, trace: true})
	if !m.srv.Passthrough() {
		t.Skip("the kernel offers no FUSE passthrough")
	}
	m.srv.Trace(true)
	if got, err := os.ReadFile(m.p("big")); err != nil || string(got) != bigData {
		t.Fatalf("big file: %d bytes %v, want %d", len(got), err, len(bigData))
	}
	if r := traceOf(m, "READ"); r != 0 {
		t.Errorf("the big file sent %d READs, want none (passthrough)", r)
	}
	inodes := m.srv.bridgeInodes()
	if inodes == 0 {
		t.Errorf("the big file has no Inode of the bridge: opened raw")
	}
	if got, err := os.ReadFile(m.p("d/e/f")); err != nil || string(got) != "f data" {
		t.Fatalf("small file: %q %v", got, err)
	}
	if n := m.srv.bridgeInodes(); n != inodes {
		t.Errorf("the small file's open made %d Inodes, want none (raw)", n-inodes)
	}
	waitRawReleased(t, m)
}

// TestFS_RawOpen_BesideSlowPromotion: a raw open does not wait for the
// promotion of another node, which may wait long for the namespace lock
// (a copy-up of a large directory holds it): only a promotion of the same
// node, or of one in its shard, holds it up.
func TestFS_RawOpen_BesideSlowPromotion(t *testing.T) {
	img := rawImage(t)
	m := mountRaw(t, img, false, false)
	u := m.srv.u
	// d gets an upper copy, so a lookup in it takes the namespace lock;
	// its lower files stay raw.
	if err := os.WriteFile(m.p("d/new"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := mustLstat(t, m.p("d/g")), mustLstat(t, m.p("d/e/f"))
	if u.raw.shard(a.Ino) == u.raw.shard(b.Ino) {
		t.Fatalf("d/g and d/e/f (inodes %d, %d) share a shard: the test tests nothing", a.Ino, b.Ino)
	}
	if !u.raw.needsPromotion(a.Ino) || !u.raw.needsPromotion(b.Ino) {
		t.Fatal("d/g and d/e/f are not raw")
	}
	u.lockNS() // what a long copy-up holds
	locked := true
	defer func() {
		if locked {
			u.unlockNS()
		}
	}()
	chmod := make(chan error, 1)
	go func() { chmod <- os.Chmod(m.p("d/g"), 0o600) }() // promotes d/g: its lookup in d waits
	// The promotion of d/g holds its shard and waits for nsMu.
	waitFor(t, "promotion of d/g", func() bool { return u.raw.promoting.Load() == a.Ino })
	opened := make(chan error, 1)
	go func() {
		f, err := os.Open(m.p("d/e/f")) // d/e/f: a raw open beside it
		if err == nil {
			f.Close()
		}
		opened <- err
	}()
	// The open completes while the promotion still waits; the deadline
	// only keeps a broken build from hanging here.
	waited := false
	select {
	case err := <-opened:
		if err != nil {
			t.Errorf("raw open beside a waiting promotion: %v", err)
		}
	case <-time.After(time.Minute):
		waited = true
		t.Error("a raw open of d/e/f does not complete while the promotion of d/g waits")
	}
	if got := u.raw.promoting.Load(); got != a.Ino {
		t.Errorf("the promotion of d/g (inode %d) is no longer the one waiting (%d): the test tested nothing", a.Ino, got)
	}
	u.unlockNS()
	locked = false
	if err := <-chmod; err != nil {
		t.Fatal(err)
	}
	if waited {
		if err := <-opened; err != nil {
			t.Fatal(err)
		}
	}
}
