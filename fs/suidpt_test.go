package fs

import (
	"fmt"
	"io"
	"os"
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
			if err := os.WriteFile(m.p("tmp/evil"), []byte("evil"), 0o644); err != nil {
				t.Fatal(err)
			}
			// What uid 2000 does with its handle (fd 3): a write, a
			// copy_file_range into it, a fallocate that extends it.
			ops := []struct{ name, script string }{
				{"write", `printf evil >&3`},
				{"copy_file_range", fmt.Sprintf(`perl -e 'open(my $in, "<", $ARGV[0]) or die "$!"; syscall(%d, fileno($in), 0, 3, 0, 4, 0) == 4 or die "copy_file_range: $!"' %q`,
					unix.SYS_COPY_FILE_RANGE, m.p("tmp/evil"))},
				{"fallocate", fmt.Sprintf(`perl -e 'syscall(%d, 3, 0, 0, 65536) == 0 or die "fallocate: $!"'`, unix.SYS_FALLOCATE)},
			}
			for i := range 2 * len(ops) {
				bits, op := []os.FileMode{os.ModeSetuid, os.ModeSetgid}[i%2], ops[i/2]
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
				cmd, stdin := startWriter(t, p, op.script)
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
				if op.name == "fallocate" {
					if st := mustLstat(t, p); st.Size != 65536 {
						t.Fatalf("%s: size %d, the fallocate did not land", p, st.Size)
					}
				} else if got := mustRead(t, p); got[:4] != "evil" {
					t.Fatalf("%s: %q, the %s did not land", p, got, op.name)
				}
				if st := mustLstat(t, p); st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
					t.Errorf("%v: a %s by uid 2000 left mode %o", bits, op.name, st.Mode&0o7777)
				}
				if st := mustLstat(t, filepath.Join(m.upper, "tmp", filepath.Base(p))); st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
					t.Errorf("%v: a %s by uid 2000 left the upper file's mode %o", bits, op.name, st.Mode&0o7777)
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
