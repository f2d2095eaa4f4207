package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-dev/strata/layerstore"
)

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
	done := make(chan result, 1)
	go func() { done <- runStrata(t, root, "", append(append([]string{"mount"}, args...), image, dir)...) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tab, err := mountTable()
		if err != nil {
			t.Fatal(err)
		}
		if tab[dir] == "fuse.strata" {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("mount ended: %v\n%s", r.err, r.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("mount did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		tab, _ := mountTable()
		if _, ok := tab[dir]; ok {
			if r := runStrata(t, root, "", "umount", "-l", dir); r.err != nil {
				t.Errorf("cleanup umount: %v", r.err)
			}
		}
	})
	return dir, done
}

func TestMount_DiffCommitUmount(t *testing.T) {
	root := newTestStore(t)
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
	root := newTestStore(t)
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
	if err := os.MkdirAll(upperDir(s, rec.ID), 0o700); err != nil {
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
