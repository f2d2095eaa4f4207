package fs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// chownAs runs chown(p, -1, -1) as uid (and gid) with no capabilities, or
// as this process's root when uid is 0, and returns its error message ("":
// none).
func chownAs(t *testing.T, uid int, p string) string {
	t.Helper()
	script := `chown(-1, -1, $ARGV[0]) or die "$!\n"`
	cmd := exec.Command("perl", "-e", script, p)
	if uid != 0 {
		id := fmt.Sprint(uid)
		cmd = exec.Command("setpriv", "--reuid="+id, "--regid="+id, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
			"perl", "-e", script, p)
	}
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		t.Fatalf("chown -1 -1 %s as uid %d: %v", p, uid, err)
	}
	return strings.TrimSpace(string(out))
}

// TestFS_SuidChown: chown(p, -1, -1), which the kernel sends as a SETATTR
// that sets nothing (ctime alone with the writeback cache), as it sends
// the request to clear setuid and setgid before a write, does what it does
// on the local file system (a plain directory beside the mount, the
// reference): a user who does not own a setuid file gets EPERM and the
// file keeps its bits, and a lower file stays lower; its owner clears
// them, root too; a file with no bits to clear is not copied up.
func TestFS_SuidChown(t *testing.T) {
	img := newTestImage(t, func(b *layerBuilder) {
		b.dir("bin", 0o755).dir("tmp", 0o1777).
			file("bin/rootsuid", 0o4755, "#!/bin/sh\n").
			file("bin/rootsgid", 0o2755, "#!/bin/sh\n").
			file("bin/plain", 0o755, "#!/bin/sh\n").
			file("bin/usersuid", 0o4755, "#!/bin/sh\n")
		for _, e := range b.entries {
			if e.Path == "bin/usersuid" {
				e.UID, e.GID = 1000, 1000
			}
		}
	})
	type file struct {
		path    string
		mode    os.FileMode
		uid     int
		chownBy int
		onUpper bool
	}
	files := []file{
		{path: "bin/rootsuid", mode: 0o755 | os.ModeSetuid, chownBy: 2000},
		{path: "bin/rootsgid", mode: 0o755 | os.ModeSetgid, chownBy: 2000},
		{path: "bin/plain", mode: 0o755, chownBy: 2000},
		{path: "bin/usersuid", mode: 0o755 | os.ModeSetuid, uid: 1000, chownBy: 1000},
		{path: "tmp/rootsuid", mode: 0o755 | os.ModeSetuid, chownBy: 2000, onUpper: true},
		{path: "tmp/usersuid", mode: 0o755 | os.ModeSetuid, uid: 1000, chownBy: 1000, onUpper: true},
		{path: "tmp/rootsuid0", mode: 0o755 | os.ModeSetuid, chownBy: 0, onUpper: true},
	}
	mk := func(t *testing.T, p string, f file) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, f.uid, f.uid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []mountOpts{{}, {writeback: true}, {passthrough: true}} {
		t.Run(fmt.Sprintf("writeback=%v,passthrough=%v", o.writeback, o.passthrough), func(t *testing.T) {
			m := mountTraced(t, img, o)
			ref := localRef(t)
			for _, f := range files {
				mk(t, filepath.Join(ref, f.path), f)
				if f.onUpper {
					mk(t, m.p(f.path), f)
				}
			}
			for _, f := range files {
				p := m.p(f.path)
				before := mustLstat(t, p)
				refErr := chownAs(t, f.chownBy, filepath.Join(ref, f.path))
				want := mustLstat(t, filepath.Join(ref, f.path)).Mode
				got := chownAs(t, f.chownBy, p)
				if got != refErr {
					t.Errorf("%s: chown -1 -1 as uid %d: %q, on the local file system %q", f.path, f.chownBy, got, refErr)
				}
				if st := mustLstat(t, p); st.Mode != want {
					t.Errorf("%s: chown -1 -1 as uid %d left mode %o, want %o", f.path, f.chownBy, st.Mode, want)
				}
				if !f.onUpper && before.Mode == want {
					if _, err := lstat(filepath.Join(m.upper, f.path)); err == nil {
						t.Errorf("%s: chown -1 -1 as uid %d, which changed nothing, copied the file up", f.path, f.chownBy)
					}
				}
			}
		})
	}
}

// TestFS_SuidCapWrite: root's write to a setuid file with a file
// capability drops the capability and keeps the setuid bit, as on the
// local file system: the kernel asks the server to remove privileges for
// the capability alone (ATTR_KILL_PRIV), from a writer with CAP_FSETID.
func TestFS_SuidCapWrite(t *testing.T) {
	img := baseImage(t)
	// cap_net_raw+ep, VFS_CAP_REVISION_2.
	capNetRaw := []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for _, o := range []mountOpts{{}, {writeback: true}, {passthrough: true}} {
		t.Run(fmt.Sprintf("writeback=%v,passthrough=%v", o.writeback, o.passthrough), func(t *testing.T) {
			m := mountTraced(t, img, o)
			for _, p := range []string{filepath.Join(t.TempDir(), "f"), m.p("tmp/f")} {
				if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, 0o755|os.ModeSetuid); err != nil {
					t.Fatal(err)
				}
				if err := unix.Setxattr(p, "security.capability", capNetRaw, 0); err != nil {
					t.Fatalf("setcap %s: %v", p, err)
				}
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt([]byte("#"), 0); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				if st := mustLstat(t, p); st.Mode&0o7777 != 0o4755 {
					t.Errorf("%s: mode %o after root's write, want 4755", p, st.Mode&0o7777)
				}
				if _, err := unix.Getxattr(p, "security.capability", make([]byte, 64)); err != unix.ENODATA {
					t.Errorf("%s: security.capability after root's write: %v, want ENODATA", p, err)
				}
			}
		})
	}
}
