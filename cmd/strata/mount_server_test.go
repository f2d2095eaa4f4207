package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
			t.Cleanup(func() { endServers(t, root) }) // the next one starts its own
			if !tc.installed {
				if err := os.Remove(lean); err != nil {
					t.Fatal(err)
				}
			}
			dir := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			mount := func(args ...string) (string, error) { return mountD(strata, root, args...) }
			// strata version names the server mount -d uses.
			c := exec.Command(strata, "--root", root, "version")
			c.Env = append(os.Environ(), cliEnv+"=1")
			ver, err := c.Output()
			want := " Mount server:     " + lean + " (protocol "
			if !tc.installed {
				want = " Mount server:     strata itself (shared, up to 16 mounts a process; no usable strata-mount beside " + filepath.Dir(strata) + ": "
			}
			if err != nil || !strings.Contains(string(ver), want) {
				t.Errorf("strata version: %v, lacks %q:\n%s", err, want, ver)
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
			// The security defaults hold whichever binary serves.
			checkMountOptions(t, dir, map[string]bool{"rw": true, "nosuid": true, "nodev": true, "allow_other": true})
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

			// And each flag that lifts one reaches the server.
			id, err = mount("--read-only", "--suid", "--dev", "--allow-other=false", "demo", dir)
			if err != nil {
				t.Fatalf("mount -d --read-only --suid --dev --allow-other=false: %v: %s", err, id)
			}
			if exe, _ := os.Readlink("/proc/" + strconv.Itoa(findLease(t, root, id).PID) + "/exe"); exe != tc.server {
				t.Errorf("mount %s is served by %s, want %s", id, exe, tc.server)
			}
			checkMountOptions(t, dir, map[string]bool{"ro": true, "nosuid": false, "nodev": false, "allow_other": false})
			mustRun(t, root, "umount", dir)
		})
	}
}

// checkMountOptions fails t unless the mount on dir has (true) or lacks
// (false) each option, per-mount (ro, nosuid, nodev) or of its super
// block (allow_other), as /proc/self/mountinfo says.
func checkMountOptions(t *testing.T, dir string, want map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var m *session.MountInfo
	for _, mi := range session.ParseMountinfo(b) {
		if mi.Dir == dir {
			m = &mi
		}
	}
	if m == nil {
		t.Fatalf("%s is not mounted", dir)
	}
	// The super options are the last field of the mount's line.
	var super string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[0] == strconv.Itoa(m.ID) {
			super = f[len(f)-1]
		}
	}
	has := map[string]bool{}
	for _, o := range strings.Split(m.Options+","+super, ",") {
		has[o] = true
	}
	for o, w := range want {
		if has[o] != w {
			t.Errorf("mount on %s: option %s is %v, want %v (mount options %s, super options %s)", dir, o, has[o], w, m.Options, super)
		}
	}
}

// installWithServer installs this test binary (the CLI, with cliEnv) as
// strata in a directory of its own, with strata-mount built beside it, and
// returns both paths.
func installWithServer(t *testing.T) (strata, lean string) {
	t.Helper()
	bin := t.TempDir()
	lean = filepath.Join(bin, mountserver.Binary)
	if out, err := exec.Command(goTool(), "build", "-o", lean, "../strata-mount").CombinedOutput(); err != nil {
		t.Fatalf("go build strata-mount: %v\n%s", err, out)
	}
	strata = filepath.Join(bin, "strata")
	installCopy(t, strata)
	return strata, lean
}

// goTool is the go this test was built with, else the one in PATH.
func goTool() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
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

// mountD runs "strata mount -d args" with the strata at path.
func mountD(strata, root string, args ...string) (string, error) {
	c := exec.Command(strata, append([]string{"--root", root, "mount", "-d"}, args...)...)
	c.Env = append(os.Environ(), cliEnv+"=1")
	out, err := c.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// mountServed runs "strata mount -d --read-only demo dir" with the strata
// at path, unmounts it when the test ends, and fails the test unless the
// executable want serves it. It returns the mount's ID.
func mountServed(t *testing.T, strata, root, dir, want string) string {
	t.Helper()
	id, err := mountD(strata, root, "--read-only", "demo", dir)
	if err != nil {
		t.Fatalf("mount -d: %v: %s", err, id)
	}
	t.Cleanup(func() {
		if _, ok := mountedAt(t, dir); ok {
			runStrata(t, root, "", "umount", "-l", dir)
		}
	})
	if id == "fake" { // what the planted servers of these tests answer
		t.Fatalf("the planted %s ran", mountserver.Binary)
	}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(findLease(t, root, id).PID) + "/exe"); err != nil || exe != want {
		t.Errorf("mount %s is served by %s (%v), want %s", id, exe, err, want)
	}
	return id
}

// A strata-mount that someone other than root or strata's owner could
// have put beside strata is not run (strata may run it as root): strata
// serves the mount itself. One that is trusted but answers anything other
// than "ready ID" fails the mount with what it said.
func TestMount_Detached_UntrustedServer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, chown")
	}
	root := storetest.Root(t)
	loadDemo(t, root)
	const fake = "#!/bin/sh\necho ready fake >&3\n"
	plant := func(t *testing.T, dirMode, mode os.FileMode, uid int) (strata, server string) {
		bin := t.TempDir()
		if err := os.Chmod(bin, dirMode); err != nil {
			t.Fatal(err)
		}
		strata = filepath.Join(bin, "strata")
		installCopy(t, strata)
		server = filepath.Join(bin, mountserver.Binary)
		if err := os.WriteFile(server, []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(server, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(server, uid, uid); err != nil {
			t.Fatal(err)
		}
		return strata, server
	}
	for _, tc := range []struct {
		name           string
		dirMode, mode  os.FileMode
		uid            int
		link, linkedBy int // link: strata-mount a symlink (owned by linkedBy) to the file
	}{
		{"owned by nobody", 0o755, 0o755, 65534, 0, 0},
		{"writable by all", 0o755, 0o777, 0, 0, 0},
		{"in a sticky world-writable directory", 0o1777, 0o755, 0, 0, 0},
		{"a symlink owned by nobody", 0o755, 0o755, 0, 1, 65534},
	} {
		t.Run(tc.name, func(t *testing.T) {
			strata, server := plant(t, tc.dirMode, tc.mode, tc.uid)
			if tc.link != 0 {
				target := server + ".real"
				if err := os.Rename(server, target); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, server); err != nil {
					t.Fatal(err)
				}
				if err := os.Lchown(server, tc.linkedBy, tc.linkedBy); err != nil {
					t.Fatal(err)
				}
			}
			dir := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			id := mountServed(t, strata, root, dir, strata)
			mdir := layerstore.MountDirIn(root, id)
			if b, _ := os.ReadFile(filepath.Join(mdir, "server.log")); !strings.Contains(string(b), "serving the mount with strata itself") {
				t.Errorf("server.log does not say why strata serves: %q", b)
			}
			mustRun(t, root, "umount", dir)
		})
	}
	t.Run("a symlink owned by root to a trusted server", func(t *testing.T) {
		strata, lean := installWithServer(t)
		real := filepath.Join(t.TempDir(), mountserver.Binary)
		if err := os.Rename(lean, real); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(real, lean); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		mountServed(t, strata, root, dir, real)
		mustRun(t, root, "umount", dir)
	})
	t.Run("trusted, but says something else", func(t *testing.T) {
		strata, _ := plant(t, 0o755, 0o755, 0)
		dir := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := mountD(strata, root, "demo", dir)
		if err == nil || !strings.Contains(out, `"ready fake"`) {
			t.Errorf("mount -d with a server that said \"ready fake\": %v, %q", err, out)
		}
		if out := mustRun(t, root, "mounts", "-q"); out != "" {
			t.Errorf("mounts: %q", out)
		}
	})
}

// A strata-mount of another build (here: one that says it speaks another
// protocol) refuses in one line, and mount -d then serves with strata
// itself and says so in server.log; strata-mount's bad flags are one line
// on the report too, not a usage dump.
func TestMount_Detached_ServerProtocol(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	strata, lean := installWithServer(t)
	root := storetest.Root(t)
	loadDemo(t, root)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	direct := func(args ...string) (report, stderr string, err error) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		c := exec.Command(lean, args...)
		c.ExtraFiles = []*os.File{w}
		var eb strings.Builder
		c.Stderr = &eb
		err = c.Start()
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		err = c.Wait()
		return string(b), eb.String(), err
	}
	rep, stderr, err := direct("--ready-fd", "3", "--root", root, "--protocol=999", "--mount-id", "x", "--", "demo", dir)
	if err == nil || strings.Count(rep, "\n") != 1 || !strings.Contains(rep, "protocol 999") || !strings.Contains(rep, "reinstall both with go install ./cmd/...") {
		t.Errorf("strata-mount --protocol=999: %v, report %q", err, rep)
	}
	if strings.Count(stderr, "\n") != 1 {
		t.Errorf("strata-mount --protocol=999 stderr: %q", stderr)
	}
	rep, stderr, err = direct("--ready-fd", "3", "--root", root, "--bogus", "--", "demo", dir)
	if err == nil || strings.Count(rep, "\n") != 1 || !strings.Contains(rep, "error: strata-mount: flag provided but not defined: -bogus") || strings.Contains(stderr, "Usage") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("strata-mount --bogus: %v, report %q, stderr %q", err, rep, stderr)
	}

	// The real strata-mount, told by a wrapper that strata speaks 999.
	real := lean + ".real"
	if err := os.Rename(lean, real); err != nil {
		t.Fatal(err)
	}
	wrapper := "#!/bin/sh\nfor a; do shift; case $a in --protocol=*) a=--protocol=999;; esac; set -- \"$@\" \"$a\"; done\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(lean, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	id := mountServed(t, strata, root, dir, strata)
	b, _ := os.ReadFile(filepath.Join(layerstore.MountDirIn(root, id), "server.log"))
	if !strings.Contains(string(b), "serving the mount with strata itself, not strata-mount: "+lean+" refused: mount server protocol mismatch") {
		t.Errorf("server.log: %q", b)
	}
	mustRun(t, root, "umount", dir)

	// A strata-mount from before --protocol dies on the flag, on stderr,
	// with no report: strata serves itself too.
	endServers(t, root) // the next mount -d starts a server
	old := "#!/bin/sh\necho 'flag provided but not defined: -protocol' >&2\necho 'Usage of strata-mount:' >&2\nexit 2\n"
	if err := os.WriteFile(lean, []byte(old), 0o755); err != nil {
		t.Fatal(err)
	}
	id = mountServed(t, strata, root, dir, strata)
	b, _ = os.ReadFile(filepath.Join(layerstore.MountDirIn(root, id), "server.log"))
	if !strings.Contains(string(b), "serving the mount with strata itself, not strata-mount: "+lean+" refused: flag provided but not defined: -protocol") {
		t.Errorf("server.log: %q", b)
	}
	mustRun(t, root, "umount", dir)
}

// A mount server that dies before it reports is named, with its pid and
// how it ended.
func TestMount_Detached_ServerKilled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	strata, lean := installWithServer(t)
	root := storetest.Root(t)
	loadDemo(t, root)
	if err := os.WriteFile(lean, []byte("#!/bin/sh\nkill -9 $$\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := mountD(strata, root, "demo", dir)
	if err == nil || !strings.Contains(out, "the mount server "+lean+" (pid ") || !strings.Contains(out, ") ended: signal: killed") {
		t.Errorf("mount -d with a server killed before it reports: %v, %q", err, out)
	}
	if ents, err := os.ReadDir(filepath.Join(root, "mounts")); err != nil && !os.IsNotExist(err) || len(ents) != 0 {
		t.Errorf("a failed mount -d left %v in mounts/ (%v)", ents, err)
	}
}
