package fs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// abortConnection aborts the FUSE connection of the mount on dir through
// a fusectl mount of the test's own, as a crashed kernel peer or an admin
// would: the kernel answers every request with ENOTCONN and sends no
// RELEASE for the files still open.
func abortConnection(t *testing.T, dir string) {
	t.Helper()
	ctl := t.TempDir()
	if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
		if errors.Is(err, unix.ENODEV) {
			t.Skip("the kernel has no fusectl")
		}
		t.Fatalf("mount fusectl: %v", err)
	}
	defer func() {
		if err := unix.Unmount(ctl, 0); err != nil {
			t.Errorf("unmount fusectl: %v", err)
		}
	}()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	abort := filepath.Join(ctl, fmt.Sprint(unix.Minor(st.Dev)), "abort")
	if err := os.WriteFile(abort, []byte("1"), 0); err != nil {
		t.Fatalf("abort the connection: %v", err)
	}
}

// fdsUnder lists this process's descriptors open on files below any of dirs.
func fdsUnder(t *testing.T, dirs ...string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // closed meanwhile (ReadDir's own)
		}
		for _, d := range dirs {
			if strings.HasPrefix(target, d+"/") {
				out = append(out, target)
			}
		}
	}
	return out
}

// TestFS_AbortClosesHandles: a mount whose connection is aborted while
// files are open (no RELEASE ever comes for them) closes the descriptors
// its handles hold when it ends, raw handles, upper files and object
// handles alike: a process that serves many mounts for a long time must
// not keep the files of mounts that ended.
func TestFS_AbortClosesHandles(t *testing.T) {
	img := baseImage(t)
	m := mountImage(t, img, mountOpts{})
	// A raw handle reading its object, an upper file, and an object
	// handle reading the upper file of a file written since it opened.
	raw, err := os.Open(m.p("usr/share/doc/a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(m.p("etc/passwd"), 0o640); err != nil { // a metacopy: its reads are the object's
		t.Fatal(err)
	}
	obj, err := os.Open(m.p("etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.ReadAt(make([]byte, 4), 0); err != nil {
		t.Fatal(err)
	}
	up, err := os.OpenFile(m.p("etc/passwd"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteAt([]byte("ROOT"), 0); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := obj.ReadAt(b, 0); err != nil || string(b) != "ROOT" {
		t.Fatalf("the reader opened before the write: %q %v", b, err)
	}
	if _, err := raw.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if fds := fdsUnder(t, m.upper, img.objects); len(fds) < 3 {
		t.Fatalf("the server holds %v; want the object, upper and raw handles' files", fds)
	}

	abortConnection(t, m.dir)
	m.srv.Wait()
	if fds := fdsUnder(t, m.upper, img.objects); len(fds) != 0 {
		t.Errorf("after the connection was aborted and the mount ended, the server still holds %v", fds)
	}
	for _, f := range []*os.File{raw, obj, up} {
		f.Close() // ENOTCONN: the descriptor goes all the same
	}
}
