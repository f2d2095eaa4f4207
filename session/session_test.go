package session_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

func TestSession_StartClose(t *testing.T) {
	st, dir, s := startDemo(t, session.Options{})
	if got, want := mustRead(t, filepath.Join(dir, "etc/passwd")), mustRead(t, filepath.Join(rootfs(t), "etc/passwd")); got != want {
		t.Errorf("etc/passwd through the mount: %q, want %q", got, want)
	}
	mustWrite(t, filepath.Join(dir, "newfile"), "hello\n")
	if err := os.Remove(filepath.Join(dir, "etc/group")); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(s.Upper(), "newfile")); got != "hello\n" {
		t.Errorf("top layer has %q", got)
	}
	if got, want := changes(s.Diff()), "C /etc\nD /etc/group\nA /newfile"; got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}

	// Found by mountpoint, by ID and by a prefix of it, from the lease.
	for _, arg := range []string{dir, s.ID(), s.ID()[:4]} {
		rec, err := session.Find(st, arg)
		if err != nil {
			t.Fatalf("Find(%q): %v", arg, err)
		}
		if rec.ID != s.ID() || rec.Dir != dir || rec.PID != os.Getpid() || rec.Ref != "demo" {
			t.Errorf("Find(%q) = %+v", arg, rec)
		}
		mi, err := session.ReadMountinfo()
		if err != nil {
			t.Fatal(err)
		}
		if got := session.StatusOf(rec, mi); got != session.Running {
			t.Errorf("status %q, want running", got)
		}
	}
	if _, err := session.Find(st, "nosuchmount"); !errors.Is(err, layerstore.ErrNotFound) {
		t.Errorf("Find of nothing: %v", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if isMounted(t, dir) {
		t.Errorf("%s still mounted after Close", dir)
	}
	mustNotExist(t, st.MountDir(s.ID()))
	if ids := leases(t, st); len(ids) != 0 {
		t.Errorf("leases after Close: %v", ids)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSession_ReadOnly(t *testing.T) {
	st, dir, s := startDemo(t, session.Options{ReadOnly: true})
	if s.Upper() != "" {
		t.Errorf("read-only session has a top layer %q", s.Upper())
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write on a read-only mount: %v", err)
	}
	if _, err := s.Commit(context.Background(), session.CommitOptions{}); !errors.Is(err, layerstore.ErrInvalid) {
		t.Errorf("commit of a read-only mount: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, st.MountDir(s.ID()))
}

// A mount in use is not closed: Close says so and the session goes on.
func TestSession_Close_Busy(t *testing.T) {
	st, dir, s := startDemo(t, session.Options{})
	f, err := os.Open(filepath.Join(dir, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("Close of a busy mount: %v, want EBUSY", err)
	}
	if !isMounted(t, dir) || len(leases(t, st)) != 1 {
		t.Errorf("a failed Close took the mount or its lease")
	}
	f.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, st.MountDir(s.ID()))
}

// Unmount from elsewhere returns only once the server has deleted the top
// layer: nothing may count its space as free before it is.
func TestUnmount_WaitsForTheTopLayer(t *testing.T) {
	st, dir, s := startDemo(t, session.Options{})
	ctx := context.Background()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	big := make([]byte, 8<<20)
	for i := 0; i < 8; i++ {
		if err := os.WriteFile(filepath.Join(dir, "big"+string(rune('0'+i))), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := session.Unmount(ctx, st, dir, session.UnmountOptions{}); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, st.MountDir(s.ID()))
	if ids := leases(t, st); len(ids) != 0 {
		t.Errorf("leases after Unmount: %v", ids)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := session.Unmount(ctx, st, dir, session.UnmountOptions{}); !errors.Is(err, layerstore.ErrNotFound) {
		t.Errorf("second Unmount: %v, want not found", err)
	}
}

func TestSession_Serve_ContextEnds(t *testing.T) {
	needFUSE(t)
	st := openStore(t)
	dir := mountDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := session.Start(ctx, st, "demo", dir, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "f"), "x")
	cancel()
	if err := s.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	if isMounted(t, dir) {
		t.Errorf("still mounted")
	}
	mustNotExist(t, st.MountDir(s.ID()))
}

// startServer runs a mount server in a child process and returns it and
// its mount ID once the mount is ready.
func startServer(t *testing.T, st *layerstore.Store, dir string, keep bool) (*exec.Cmd, string) {
	t.Helper()
	mode := "drop"
	if keep {
		mode = "keep"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+strings.Join([]string{st.Root(), "demo", dir, mode}, "\n"))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	id, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if !ok {
		t.Fatalf("server: %q", line)
	}
	return cmd, id
}

// kill SIGKILLs a server and reaps it.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// A server killed mid-mount leaves a stale mountpoint and a lease: Reap
// detaches the one and drops the other with the top layer.
func TestReap_DeadServer(t *testing.T) {
	needFUSE(t)
	st := openStore(t)
	dir := mountDir(t)
	cmd, id := startServer(t, st, dir, false)
	mustWrite(t, filepath.Join(dir, "f"), "x")
	if err := session.Reap(st, id); !errors.Is(err, layerstore.ErrInUse) {
		t.Errorf("Reap of a live mount: %v, want in use", err)
	}
	kill(t, cmd)
	rec, err := session.Find(st, id)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := session.ReadMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	if got := session.StatusOf(rec, mi); got != session.Stale {
		t.Errorf("status %q, want stale", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("stat in a dead mount: %v, want ENOTCONN", err)
	}
	if err := session.Reap(st, id); err != nil {
		t.Fatal(err)
	}
	if isMounted(t, dir) {
		t.Errorf("still mounted after Reap")
	}
	mustNotExist(t, st.MountDir(id))
	if ids := leases(t, st); len(ids) != 0 {
		t.Errorf("leases after Reap: %v", ids)
	}
}

// Unmount (strata umount) of a mount whose server died cleans up itself.
func TestUnmount_DeadServer(t *testing.T) {
	needFUSE(t)
	st := openStore(t)
	dir := mountDir(t)
	cmd, id := startServer(t, st, dir, false)
	kill(t, cmd)
	if err := session.Unmount(context.Background(), st, id, session.UnmountOptions{}); err != nil {
		t.Fatal(err)
	}
	if isMounted(t, dir) {
		t.Errorf("still mounted after Unmount")
	}
	mustNotExist(t, st.MountDir(id))
	if ids := leases(t, st); len(ids) != 0 {
		t.Errorf("leases after Unmount: %v", ids)
	}
}

func TestSession_Commit(t *testing.T) {
	st, dir, s := startDemo(t, session.Options{})
	ctx := context.Background()
	mustWrite(t, filepath.Join(dir, "etc/newfile"), "hi\n")
	if err := os.Remove(filepath.Join(dir, "etc/group")); err != nil {
		t.Fatal(err)
	}
	img, err := s.Commit(ctx, session.CommitOptions{Names: []string{"demo:patched"}, Message: "two changes", Author: "Jane"})
	if err != nil {
		t.Fatal(err)
	}
	got, tree, err := st.ImageTree("demo:patched")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != img.ID {
		t.Errorf("demo:patched is %s, commit made %s", got.ID, img.ID)
	}
	if _, ok := tree.Lookup("etc/group"); ok {
		t.Errorf("committed image still has etc/group")
	}
	if e, ok := tree.Lookup("etc/newfile"); !ok || e.Size != 3 {
		t.Errorf("committed image: etc/newfile %+v", e)
	}
	if !strings.Contains(string(img.ConfigRaw), `"comment":"two changes"`) || !strings.Contains(string(img.ConfigRaw), `"author":"Jane"`) {
		t.Errorf("config has no history entry of the commit: %s", img.ConfigRaw)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, st.MountDir(s.ID()))
}
