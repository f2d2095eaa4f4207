package fs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// traceOf returns the count of op in the mount's trace.
func traceOf(m *testMount, op string) uint64 {
	for _, c := range m.srv.Trace(false) {
		if c.Op == op {
			return c.Count
		}
	}
	return 0
}

func mountTraced(t *testing.T, img *testImage, o mountOpts) *testMount {
	t.Helper()
	o.trace = true
	o.shared = true // TestFS_KillPriv acts as another user
	return mountImage(t, img, o)
}

// The kernel is told once that directories need no open: a walk sends no
// OPENDIR after the first and no RELEASEDIR, and listings stay right as
// directories change.
func TestFS_NoOpendir(t *testing.T) {
	img := baseImage(t)
	m := mountTraced(t, img, mountOpts{})
	for range 3 {
		walkNames(t, m.dir)
	}
	if n := traceOf(m, "OPENDIR"); n != 1 {
		t.Errorf("OPENDIR sent %d times over three walks, want once (answered ENOSYS)", n)
	}
	if n := traceOf(m, "RELEASEDIR"); n != 0 {
		t.Errorf("RELEASEDIR sent %d times, want none", n)
	}
	if n := traceOf(m, "READDIRPLUS") + traceOf(m, "READDIR"); n == 0 {
		t.Error("no READDIR in the trace: the walks did not reach the server")
	}
	// Every opcode served carries the server's time on it; the counts by
	// xattr name are counts only.
	for _, c := range m.srv.Trace(false) {
		if named := strings.HasPrefix(c.Op, "GETXATTR:"); named != (c.Time == 0) {
			t.Errorf("trace %s: %d requests in %v", c.Op, c.Count, c.Time)
		}
	}
	// A change shows in the next listing, the cache notwithstanding.
	if err := os.WriteFile(m.p("usr/share/doc/new.txt"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.p("usr/share/doc/a.txt")); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(m.p("usr/share/doc"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != "new.txt,sub" {
		t.Errorf("usr/share/doc lists %s, want new.txt,sub", got)
	}
	// A listing bigger than one reply continues at the kernel's offset on
	// a handle of its own.
	dir := m.p("tmp/many")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 700
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, strings.Repeat("x", 60)+string(rune('a'+i%26))+time.Duration(i).String()), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := traceOf(m, "READDIRPLUS") + traceOf(m, "READDIR")
	ents, err = os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		t.Errorf("tmp/many lists %d entries, want %d", len(ents), n)
	}
	if reqs := traceOf(m, "READDIRPLUS") + traceOf(m, "READDIR") - before; reqs < 2 {
		t.Errorf("a %d-entry listing took %d READDIR requests, want several (the test does not test continuation)", n, reqs)
	}
}

// With the writeback cache, small writes reach the server in few large
// WRITEs, reads through write-only handles work, a write inside a metacopy
// copies the data, and Sync puts everything in the upper dir while the file
// is still open.
func TestFS_Writeback(t *testing.T) {
	img := baseImage(t)
	if both := mountTraced(t, img, mountOpts{writeback: true, passthrough: true}); both.srv.Passthrough() && both.srv.Writeback() {
		t.Error("passthrough on beside the writeback cache: the kernel does not combine them")
	} else if ok, _ := PassthroughAvailable(); ok != both.srv.Passthrough() {
		t.Errorf("asked for both: passthrough %v, writeback %v; want passthrough where available (%v)", both.srv.Passthrough(), both.srv.Writeback(), ok)
	}
	m := mountTraced(t, img, mountOpts{writeback: true})
	if !m.srv.Writeback() {
		t.Skip("the kernel offers no writeback cache")
	}
	start := time.Now().Add(-time.Second)
	f, err := os.OpenFile(m.p("tmp/log"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := bytes.Repeat([]byte("0123456789abcdef"), 4) // 64 bytes, not page-aligned
	var want []byte
	for range 1000 {
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
		want = append(want, line...)
	}
	// A partial page in the middle: the kernel reads the page through this
	// write-only handle.
	if _, err := f.WriteAt([]byte("XY"), 5000); err != nil {
		t.Fatal(err)
	}
	copy(want[5000:], "XY")
	st := mustLstat(t, m.p("tmp/log"))
	if st.Size != int64(len(want)) {
		t.Errorf("size while open: %d, want %d", st.Size, len(want))
	}
	if mt := time.Unix(st.Mtim.Unix()); mt.Before(start) {
		t.Errorf("mtime %v, before the writes at %v", mt, start)
	}
	if err := m.srv.Sync(); err != nil {
		t.Fatal(err)
	}
	for range 3 { // closes: FLUSH once at most
		if _, err := os.ReadFile(m.p("etc/passwd")); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(m.upper, "tmp/log")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("upper tmp/log after Sync: %d bytes (%v), want %d", len(got), err, len(want))
	}
	if n := traceOf(m, "FLUSH"); n > 1 {
		t.Errorf("FLUSH sent %d times, want once (answered ENOSYS)", n)
	}
	if w := traceOf(m, "WRITE"); w > 100 {
		t.Errorf("%d WRITE requests for 1001 writes: the kernel did not cache them", w)
	}
	if got := mustRead(t, m.p("tmp/log")); got != string(want) {
		t.Error("tmp/log reads back other bytes than were written")
	}

	// A write inside a lower file (a metacopy after open) copies its data.
	g, err := os.OpenFile(m.p("data/big"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt([]byte("ZZ"), 4097); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	wantBig := []byte(dataContent)
	copy(wantBig[4097:], "ZZ")
	if got := mustRead(t, m.p("data/big")); got != string(wantBig) {
		t.Error("data/big after a write inside: other bytes than expected")
	}
	if err := m.srv.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := readUpper(t, filepath.Join(m.upper, "data/big"), img); got != string(wantBig) {
		t.Error("upper data/big after a write inside: other bytes than expected")
	}
	st = mustLstat(t, m.p("data/big"))
	if st.Size != int64(len(wantBig)) {
		t.Errorf("data/big size %d, want %d", st.Size, len(wantBig))
	}
	// Truncation through the kernel's cache.
	if err := os.Truncate(m.p("data/big"), 10); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m.p("data/big")); got != string(wantBig[:10]) {
		t.Errorf("data/big after truncate: %q", got)
	}
}

// With HANDLE_KILLPRIV_V2 the kernel asks for security.capability once per
// file, not before every write, and the server clears setuid and setgid
// bits where the kernel would have: a write, a truncation, an O_TRUNC open
// of a setuid file by someone without CAP_FSETID.
func TestFS_KillPriv(t *testing.T) {
	img := baseImage(t)
	for _, o := range []mountOpts{{}, {writeback: true}, {passthrough: true}} {
		t.Run(fmt.Sprintf("writeback=%v,passthrough=%v", o.writeback, o.passthrough), func(t *testing.T) {
			m := mountTraced(t, img, o)
			f, err := os.OpenFile(m.p("tmp/w"), os.O_WRONLY|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			before := traceOf(m, "GETXATTR")
			for range 200 {
				if _, err := f.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			if n := traceOf(m, "GETXATTR") - before; n > 2 {
				t.Errorf("%d GETXATTR requests for 200 writes, want at most one per file", n)
			}
			// Setuid and setgid (group-executable) files lose the bits
			// when a user without CAP_FSETID writes or truncates them.
			for i, op := range []string{"write", "truncate", "open O_TRUNC"} {
				p := m.p(fmt.Sprintf("tmp/suid%d", i))
				if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(p, 1000, 1000); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, 0o775|os.ModeSetuid|os.ModeSetgid); err != nil { // after chown, which clears them
					t.Fatal(err)
				}
				if st := mustLstat(t, p); st.Mode&(unix.S_ISUID|unix.S_ISGID) != unix.S_ISUID|unix.S_ISGID {
					t.Fatalf("mode %o after chmod 6775", st.Mode&0o7777)
				}
				script := map[string]string{
					"write":        "printf y >> " + p,
					"truncate":     "truncate -s 1 " + p,
					"open O_TRUNC": ": > " + p,
				}[op]
				cmd := exec.Command("setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "sh", "-c", script)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s as uid 1000: %v: %s", op, err, out)
				}
				st := mustLstat(t, p)
				if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
					t.Errorf("%s by uid 1000: mode %o keeps setuid/setgid", op, st.Mode&0o7777)
				}
				// The upper file too: a passthrough write is the kernel's,
				// made with the server's credentials.
				if st := mustLstat(t, filepath.Join(m.upper, "tmp", filepath.Base(p))); st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
					t.Errorf("%s by uid 1000: the upper file's mode %o keeps setuid/setgid", op, st.Mode&0o7777)
				}
			}
		})
	}
}
