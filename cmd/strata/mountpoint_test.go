package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/storetest"
)

// TestMount_RefusesToHide: a directory with files, or one already mounted
// on, is refused (nothing mounted, no lease left) unless --force.
func TestMount_RefusesToHide(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	t.Setenv(cliEnv, "1") // for the server "mount -d" starts
	root := storetest.Root(t)
	loadDemo(t, root)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mine"), []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unmount := func() {
		if _, ok := mountedAt(t, dir); ok {
			if r := runStrata(t, root, "", "umount", "-l", dir); r.err != nil {
				t.Errorf("umount: %v", r.err)
			}
		}
	}
	t.Cleanup(unmount)

	r := runStrata(t, root, "", "mount", "-d", "demo", dir)
	if r.code != 1 || !strings.Contains(r.stderr, dir+" is not empty (mine): the mount would hide what is there") || !strings.Contains(r.stderr, "--force") {
		t.Errorf("mount on a non-empty dir: %d %q", r.code, r.stderr)
	}
	if _, ok := mountedAt(t, dir); ok || mustRun(t, root, "mounts", "-q") != "" {
		t.Fatal("refused, yet mounted or leased")
	}
	mustRun(t, root, "mount", "-d", "--force", "demo", dir)
	if _, err := os.Stat(filepath.Join(dir, "etc", "motd")); err != nil {
		t.Errorf("--force: no image there: %v", err)
	}
	r = runStrata(t, root, "", "mount", "-d", "--force=false", "demo", dir)
	if r.code != 1 || !strings.Contains(r.stderr, dir+" is already a mount point (fuse.strata)") {
		t.Errorf("mount on a mount point: %d %q", r.code, r.stderr)
	}
	if n := strings.Count(mustRun(t, root, "mounts", "-q"), "\n"); n != 1 {
		t.Errorf("%d mounts, want 1", n)
	}
	mustRun(t, root, "umount", dir)
	if b, err := os.ReadFile(filepath.Join(dir, "mine")); err != nil || string(b) != "keep me\n" {
		t.Errorf("what was hidden: %q %v", b, err)
	}
}

// TestMount_BusyOnCtrlC: Ctrl-C of a foreground mount that a process uses
// says who holds it and how to detach it, in a sentence, and the mount goes
// once that process lets go.
func TestMount_BusyOnCtrlC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	root := storetest.Root(t)
	loadDemo(t, root)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	mount := exec.Command(self, "--root", root, "mount", "demo", dir)
	mount.Env = append(os.Environ(), cliEnv+"=1")
	stderr, err := mount.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mount.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mount.Process.Kill()
		mount.Wait()
		if _, ok := mountedAt(t, dir); ok {
			runStrata(t, root, "", "umount", "-l", dir)
		}
		runStrata(t, root, "", "gc")
	})
	lines := make(chan string, 16)
	var said []string // for the failure message
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	wait := func(want string) string {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("mount ended before saying %q; it said:\n%s", want, strings.Join(said, "\n"))
				}
				said = append(said, l)
				if strings.Contains(l, want) {
					return l
				}
			case <-deadline:
				t.Fatalf("mount did not say %q", want)
			}
		}
	}
	wait("mounted on")
	sleeper := exec.Command("sleep", "60")
	sleeper.Dir = filepath.Join(dir, "etc")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	mount.Process.Signal(syscall.SIGINT)
	line := wait("is in use")
	want := "strata: " + dir + " is in use, so it stays mounted until nothing uses it: used by sleep (pid " + strconv.Itoa(sleeper.Process.Pid) + ", working directory " + dir + "/etc). End or move those, or detach the mount now with \"strata umount -l " + dir + "\""
	if !strings.HasPrefix(line, want) {
		t.Errorf("busy:\n%s\nwant\n%s", line, want)
	}
	if strings.Contains(line, "level=") || strings.Contains(line, "err=") {
		t.Errorf("a log line, not a sentence: %s", line)
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	done := make(chan error, 1)
	go func() { done <- mount.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("mount after its user let go: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the mount did not end once nothing used it")
	}
	if _, ok := mountedAt(t, dir); ok {
		t.Error("still mounted")
	}
}

// TestMount_AsAUser: a user other than root is told in a sentence what it
// can do (a read-only mount) instead of fusermount's exit status, and a
// user without a home where to put the store.
func TestMount_AsAUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to become another user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Not under t.TempDir(), whose parent only root may enter.
	dir, err := os.MkdirTemp("", "strata-asuser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	asNobody := func(env []string, args ...string) string {
		t.Helper()
		c := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--", self}, args...)...)
		c.Env = append(env, cliEnv+"=1", "PATH="+os.Getenv("PATH"))
		c.Dir = dir
		out, err := c.CombinedOutput()
		if err == nil {
			t.Fatalf("strata %s as nobody succeeded:\n%s", strings.Join(args, " "), out)
		}
		return string(out)
	}
	out := asNobody([]string{"HOME=" + dir}, "--root", filepath.Join(dir, "store"), "mount", "demo", dir)
	if want := "Error: a writable mount needs root (its top layer keeps whiteouts and owners as trusted.* extended attributes, which only root may set): as a user, mount read-only with \"strata mount --read-only IMAGE DIR\", where /dev/fuse is usable\n"; out != want {
		t.Errorf("writable mount as nobody:\n%q\nwant\n%q", out, want)
	}
	out = asNobody(nil, "images")
	if !strings.HasPrefix(out, "Error: no store directory: this user has no home directory and neither STRATA_ROOT nor --root names one; put the store in a directory of your own, e.g. --root /var/tmp/strata-65534") {
		t.Errorf("no home:\n%s", out)
	}
	out = asNobody([]string{"HOME=/nonexistent"}, "images")
	if !strings.Contains(out, "(the default store /nonexistent/.local/share/strata cannot be made here: name a directory of your own with --root DIR or STRATA_ROOT=DIR)") {
		t.Errorf("home that does not exist:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); !os.IsNotExist(err) {
		t.Errorf("a refused mount made the store: %v", err)
	}
}
