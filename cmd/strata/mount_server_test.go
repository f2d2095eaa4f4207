package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/mountserver"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// "strata mount -d" serves the mount with strata-mount when it is installed
// beside strata, and with strata itself when it is not; either way the
// mount works, a failure comes back as the server said it, and umount
// leaves nothing behind.
func TestMount_Detached_ServerBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	strata, lean := installWithServer(t)
	root := storetest.Root(t)
	loadDemo(t, root)

	for _, tc := range []struct {
		name      string
		installed bool
		server    string
	}{
		{"strata-mount beside strata", true, lean},
		{"strata alone", false, strata},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.installed {
				if err := os.Remove(lean); err != nil {
					t.Fatal(err)
				}
			}
			dir := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			mount := func(args ...string) (string, error) {
				c := exec.Command(strata, append([]string{"--root", root, "mount", "-d"}, args...)...)
				c.Env = append(os.Environ(), cliEnv+"=1")
				out, err := c.CombinedOutput()
				return strings.TrimSpace(string(out)), err
			}
			// A server's failure is what the command says, and leaves no
			// lease or mount directory.
			out, err := mount("nosuch:image", dir)
			if err == nil || !strings.Contains(out, "nosuch") {
				t.Errorf("mount -d of a missing image: %v, %q", err, out)
			}
			if ents, err := os.ReadDir(filepath.Join(root, "mounts")); err != nil && !os.IsNotExist(err) || len(ents) != 0 {
				t.Errorf("a failed mount -d left %v in mounts/ (%v)", ents, err)
			}

			id, err := mount("demo", dir)
			if err != nil {
				t.Fatalf("mount -d: %v: %s", err, id)
			}
			t.Cleanup(func() {
				if _, ok := mountedAt(t, dir); ok {
					if r := runStrata(t, root, "", "umount", "-l", dir); r.err != nil {
						t.Errorf("cleanup umount: %v", r.err)
					}
				}
			})
			rec := findLease(t, root, id)
			exe, err := os.Readlink("/proc/" + strconv.Itoa(rec.PID) + "/exe")
			if err != nil {
				t.Fatal(err)
			}
			if exe != tc.server {
				t.Errorf("mount %s is served by %s, want %s", id, exe, tc.server)
			}
			if err := os.WriteFile(filepath.Join(dir, "etc/written"), []byte("top\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "etc/written")); err != nil || string(b) != "top\n" {
				t.Errorf("read back: %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "etc/passwd")); err != nil {
				t.Errorf("the image's files: %v", err)
			}
			if got := mustRun(t, root, "diff", dir); got != "C /etc\nA /etc/written\n" {
				t.Errorf("diff: %q", got)
			}
			mustRun(t, root, "umount", dir)
			if out := mustRun(t, root, "mounts", "-q"); out != "" {
				t.Errorf("mounts after umount: %q", out)
			}
			if _, ok := mountedAt(t, dir); ok {
				t.Errorf("%s still mounted", dir)
			}
		})
	}
}

// installWithServer installs this test binary (the CLI, with cliEnv) as
// strata in a directory of its own, with strata-mount built beside it, and
// returns both paths.
func installWithServer(t *testing.T) (strata, lean string) {
	t.Helper()
	bin := t.TempDir()
	lean = filepath.Join(bin, mountserver.Binary)
	if out, err := exec.Command("go", "build", "-o", lean, "../strata-mount").CombinedOutput(); err != nil {
		t.Fatalf("go build strata-mount: %v\n%s", err, out)
	}
	strata = filepath.Join(bin, "strata")
	installCopy(t, strata)
	return strata, lean
}

// findLease returns mount id's lease.
func findLease(t *testing.T, root, id string) *layerstore.MountRecord {
	t.Helper()
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, err := session.Find(s, id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// installCopy puts a copy of this test binary at path (a hard link where
// the file system allows it).
func installCopy(t *testing.T, path string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if os.Link(self, path) == nil {
		return
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
