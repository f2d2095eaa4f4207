package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/runctest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// cliEnv makes the test binary run the CLI instead of the tests, so that
// "strata mount -d", which starts its server from its own executable, works
// in tests.
const cliEnv = "STRATA_TEST_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(execute(os.Args[1:]))
	}
	if sock := os.Getenv(askEnv); sock != "" {
		os.Exit(ask(sock, os.Getenv(askRequestEnv)))
	}
	// Tests that run containers without a runc root of their own
	// (containerStore gives one) share this process's.
	if os.Getenv(runcRootEnv) == "" {
		root, err := runctest.Process()
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Setenv(runcRootEnv, root)
	}
	code := m.Run()
	stopDocker()
	runctest.Finish()
	os.Exit(code)
}

// startMount runs "strata mount" in the foreground in this process and waits
// until the mount is up; the returned channel gets the command's result when
// the mount ends.
func startMount(t *testing.T, root string, args ...string) (string, <-chan result) {
	t.Helper()
	return startMountImage(t, root, "demo", args...)
}

// startMountImage is startMount of image.
func startMountImage(t *testing.T, root, image string, args ...string) (string, <-chan result) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Ready is the server's "mounted on" line, printed once fs.Mount has
	// returned: not the mount table, where the mount shows up before
	// go-fuse has taught the kernel that it answers no POLL. Opening a
	// file of the mount from this process before then makes the Go
	// runtime's epoll_ctl wait for a POLL answer that the server, whose
	// goroutines need that very thread's P, may never send.
	ready := make(chan struct{})
	done := make(chan result, 1)
	go func() {
		cmd := newRootCmd()
		var out bytes.Buffer
		errw := &lineSignal{want: "mounted on", signal: ready}
		cmd.SetOut(&out)
		cmd.SetErr(errw)
		cmd.SetIn(strings.NewReader(""))
		cmd.SetArgs(append([]string{"--root", root, "--lock-timeout", "5", "mount"}, append(args, image, dir)...))
		err := cmd.Execute()
		r := result{err: err, stdout: out.String(), stderr: errw.String()}
		if err != nil {
			r.code = exitCode(err)
		}
		done <- r
	}()
	select {
	case <-ready:
	case r := <-done:
		t.Fatalf("mount ended: %v\n%s", r.err, r.stderr)
	case <-time.After(20 * time.Second):
		t.Fatal("mount did not come up")
	}
	if fstype, _ := mountedAt(t, dir); fstype != "fuse.strata" {
		t.Fatalf("the server says mounted, the mount table says %q", fstype)
	}
	t.Cleanup(func() {
		if _, ok := mountedAt(t, dir); ok {
			if r := runStrata(t, root, "", "umount", "-l", dir); r.err != nil {
				t.Errorf("cleanup umount: %v", r.err)
			}
		}
	})
	return dir, done
}

// mountedAt reports whether dir is a mount point, and its file system type.
func mountedAt(t *testing.T, dir string) (string, bool) {
	t.Helper()
	mi, err := session.ReadMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	return session.Mounted(mi, dir)
}

func TestMount_DiffCommitUmount(t *testing.T) {
	root := storetest.Root(t)
	loadDemo(t, root)
	dir, done := startMount(t, root)

	if err := os.WriteFile(filepath.Join(dir, "etc/newfile"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "etc/group")); err != nil {
		t.Fatal(err)
	}
	if got, want := mustRun(t, root, "diff", dir), "C /etc\nD /etc/group\nA /etc/newfile\n"; got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}

	header, rows := tableRows(t, mustRun(t, root, "mounts"))
	if strings.Join(header, "|") != "ID|IMAGE|MOUNTPOINT|TOP-LAYER|SIZE|PID|STATUS" || len(rows) != 1 {
		t.Fatalf("mounts: %v %v", header, rows)
	}
	if r := rows[0]; r[1] != "demo" || r[2] != dir || r[6] != "running" || !strings.HasSuffix(r[3], "/upper") {
		t.Errorf("mounts row %v", r)
	}
	upper := rows[0][3]

	id := strings.TrimSpace(mustRun(t, root, "commit", "-m", "two changes", dir, "demo:patched"))
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("commit printed %q", id)
	}
	if out := mustRun(t, root, "history", "demo:patched"); !strings.Contains(out, "two changes") {
		t.Errorf("history of the commit:\n%s", out)
	}
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, tree, err := s.ImageTree("demo:patched")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tree.Lookup("etc/group"); ok {
		t.Errorf("committed image still has etc/group")
	}
	if e, ok := tree.Lookup("etc/newfile"); !ok || e.Size != 3 {
		t.Errorf("committed image: etc/newfile %+v", e)
	}

	// Busy: an open file keeps the mount.
	f, err := os.Open(filepath.Join(dir, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if r := runStrata(t, root, "", "umount", dir); r.err == nil || !strings.Contains(r.stderr, "busy") {
		t.Errorf("umount of a busy mount: %v %s", r.err, r.stderr)
	}
	f.Close()
	mustRun(t, root, "umount", dir)
	select {
	case r := <-done:
		if r.err != nil {
			t.Errorf("mount command: %v\n%s", r.err, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mount command did not end after umount")
	}
	if _, err := os.Stat(upper); !os.IsNotExist(err) {
		t.Errorf("top layer %s still there: %v", upper, err)
	}
	if out := mustRun(t, root, "mounts", "-q"); out != "" {
		t.Errorf("mounts after umount: %q", out)
	}
}

// TestUmount_DeadServer cleans up after a server that is gone.
func TestUmount_DeadServer(t *testing.T) {
	root := storetest.Root(t)
	loadDemo(t, root)
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.ResolveImage("demo")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec := layerstore.MountRecord{ID: "0123456789ab", Image: img.ID, Ref: "demo", Dir: dir, PID: 1 << 30, Created: time.Now()}
	if err := s.AddMount(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(session.UpperDir(s, rec.ID), 0o700); err != nil {
		t.Fatal(err)
	}
	_, rows := tableRows(t, mustRun(t, root, "mounts"))
	if len(rows) != 1 || rows[0][len(rows[0])-1] != "dead" {
		t.Errorf("mounts shows %v, want one dead mount", rows)
	}
	mustRun(t, root, "umount", dir)
	if _, err := os.Stat(s.MountDir(rec.ID)); !os.IsNotExist(err) {
		t.Errorf("mount dir still there: %v", err)
	}
	if out := mustRun(t, root, "mounts", "-q"); out != "" {
		t.Errorf("mounts after umount: %q", out)
	}
}

// "strata umount" of a detached mount returns only once its server has
// deleted the top layer, so a gc right after it finds nothing of it to free
// (issue: it used to return while the server was still deleting, and a gc
// in that window reported space it did not free).
func TestUmount_Detached_TopLayerGoneOnReturn(t *testing.T) {
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
	id := strings.TrimSpace(mustRun(t, root, "mount", "-d", "demo", dir))
	t.Cleanup(func() {
		if _, ok := mountedAt(t, dir); ok {
			if r := runStrata(t, root, "", "umount", "-l", dir); r.err != nil {
				t.Errorf("cleanup umount: %v", r.err)
			}
		}
	})
	if fstype, _ := mountedAt(t, dir); fstype != "fuse.strata" {
		t.Fatalf("mount -d returned %q, and %s is %q", id, dir, fstype)
	}
	// Many files and some bulk: the top layer takes a while to delete.
	big := make([]byte, 16<<20)
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "many"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if err := os.WriteFile(filepath.Join(dir, "many", strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(session.UpperDir(s, id), "big")); err != nil {
		t.Fatalf("the top layer of mount %s: %v", id, err)
	}

	mustRun(t, root, "umount", dir)
	if _, err := os.Stat(s.MountDir(id)); !os.IsNotExist(err) {
		t.Errorf("umount returned with the mount's directory still there: %v", err)
	}
	if out := mustRun(t, root, "mounts", "-q"); out != "" {
		t.Errorf("mounts after umount: %q", out)
	}
	if out := mustRun(t, root, "gc"); out != "Total reclaimed space: 0B\n" {
		t.Errorf("gc right after umount: %q", out)
	}
	if _, ok := mountedAt(t, dir); ok {
		t.Errorf("%s still mounted", dir)
	}
}

// lineSignal is a writer that closes signal once what it was given
// contains want.
type lineSignal struct {
	mu     sync.Mutex
	b      bytes.Buffer
	want   string
	signal chan struct{}
	done   bool
}

func (l *lineSignal) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if !l.done && strings.Contains(l.b.String(), l.want) {
		l.done = true
		close(l.signal)
	}
	return len(p), nil
}

func (l *lineSignal) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
