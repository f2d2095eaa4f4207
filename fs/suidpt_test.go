package fs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFS_SuidOpenWriter: a file made setuid (or setgid and group-
// executable) while another user holds it open for writing loses the bits
// when that user writes through the handle, as on a local file system
// (should_remove_suid): a writer must not be able to put its own code into
// a program that runs as its owner. With passthrough the kernel writes the
// upper file itself, with the server's credentials.
func TestFS_SuidOpenWriter(t *testing.T) {
	img := baseImage(t)
	for _, o := range []mountOpts{{}, {writeback: true}, {passthrough: true}} {
		t.Run(fmt.Sprintf("writeback=%v,passthrough=%v", o.writeback, o.passthrough), func(t *testing.T) {
			m := mountTraced(t, img, o)
			for i, bits := range []os.FileMode{os.ModeSetuid, os.ModeSetgid} {
				p := m.p(fmt.Sprintf("tmp/prog%d", i))
				if err := os.WriteFile(p, []byte("#!/bin/sh\necho owner\n"), 0o777); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(p, 1000, 1000); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, 0o777); err != nil {
					t.Fatal(err)
				}
				waitNoOpens(t, m, p)
				// uid 2000 opens it for writing and waits for a line.
				cmd := exec.Command("setpriv", "--reuid=2000", "--regid=2000", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
					"sh", "-c", `exec 3<>"$1"; echo ready; read x; printf evil >&3`, "sh", p)
				stdin, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
				line, err := bufio.NewReader(stdout).ReadString('\n')
				if err != nil || line != "ready\n" {
					t.Fatalf("writer: %q %v", line, err)
				}
				// The owner makes it setuid meanwhile (as uid 1000 would:
				// root here, which keeps the bit on chmod).
				if err := os.Chmod(p, 0o777|bits); err != nil {
					t.Fatal(err)
				}
				if st := mustLstat(t, p); st.Mode&(unix.S_ISUID|unix.S_ISGID) == 0 {
					t.Fatalf("mode %o after chmod", st.Mode&0o7777)
				}
				m.srv.Trace(true)
				io.WriteString(stdin, "go\n")
				stdin.Close()
				if err := cmd.Wait(); err != nil {
					t.Fatalf("writer: %v", err)
				}
				if got := mustRead(t, p); got[:4] != "evil" {
					t.Fatalf("%s: %q, the write did not land", p, got)
				}
				if st := mustLstat(t, p); st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
					t.Errorf("%v: a write by uid 2000 left mode %o", bits, st.Mode&0o7777)
				}
				if st := mustLstat(t, filepath.Join(m.upper, "tmp", filepath.Base(p))); st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
					t.Errorf("%v: a write by uid 2000 left the upper file's mode %o", bits, st.Mode&0o7777)
				}
				// A writer with CAP_FSETID (root here) keeps them, through a
				// handle opened before the chmod as through any.
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, 0o777|bits); err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt([]byte("root"), 0); err != nil {
					t.Fatal(err)
				}
				f.Close()
				if st := mustLstat(t, p); st.Mode&0o7777 != uint32(0o777|unixBits(bits)) {
					t.Errorf("%v: a write by root left mode %o, want %o", bits, st.Mode&0o7777, 0o777|unixBits(bits))
				}
			}
		})
	}
}

func unixBits(m os.FileMode) uint32 {
	var b uint32
	if m&os.ModeSetuid != 0 {
		b |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		b |= unix.S_ISGID
	}
	return b
}
