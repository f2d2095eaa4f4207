package session_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// changeKept makes one change of every kind the top layer records: a new
// file, an append to a large lower file (a metacopy), a metadata-only
// change, a deletion, a renamed lower directory (copied whole, its files
// metacopies at a path the image does not have) and a hard link.
func changeKept(t *testing.T, dir string) {
	t.Helper()
	mustWrite(t, filepath.Join(dir, "newfile"), "hello\n")
	f, err := os.OpenFile(filepath.Join(dir, "app/blob-copy.bin"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("tail"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		os.Chmod(filepath.Join(dir, "etc/motd"), 0o600),
		os.Remove(filepath.Join(dir, "etc/group")),
		os.Rename(filepath.Join(dir, "app/data"), filepath.Join(dir, "app/moved")),
		os.Link(filepath.Join(dir, "etc/passwd"), filepath.Join(dir, "etc/passwd2")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkKept checks that the mount on dir shows what changeKept did.
func checkKept(t *testing.T, dir string) {
	t.Helper()
	ref := rootfs(t)
	if got := mustRead(t, filepath.Join(dir, "newfile")); got != "hello\n" {
		t.Errorf("newfile: %q", got)
	}
	if got, want := mustRead(t, filepath.Join(dir, "app/blob-copy.bin")), mustRead(t, filepath.Join(ref, "app/blob-copy.bin"))+"tail"; got != want {
		t.Errorf("app/blob-copy.bin: %d bytes, want %d (the object's and the appended tail)", len(got), len(want))
	}
	if got, want := mustRead(t, filepath.Join(dir, "app/moved/only")), mustRead(t, filepath.Join(ref, "app/data/only")); got != want {
		t.Errorf("app/moved/only: %q, want %q", got, want)
	}
	mustNotExist(t, filepath.Join(dir, "app/data"))
	mustNotExist(t, filepath.Join(dir, "etc/group"))
	if fi, err := os.Stat(filepath.Join(dir, "etc/motd")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("etc/motd: %v %v, want mode 0600", fi, err)
	}
	a, errA := os.Stat(filepath.Join(dir, "etc/passwd"))
	b, errB := os.Stat(filepath.Join(dir, "etc/passwd2"))
	if errA != nil || errB != nil || !os.SameFile(a, b) || a.Sys().(*syscall.Stat_t).Nlink != 2 {
		t.Errorf("etc/passwd and its link: %v %v %v %v", a, b, errA, errB)
	}
}

// A kept session keeps its top layer across a restart of its server: what
// was written is there after Resume, under the same mount ID, and only
// Remove deletes it.
func TestSession_KeepAcrossRestart(t *testing.T) {
	st, dir, s := startDemo(t, session.Options{Keep: true})
	ctx := context.Background()
	id := s.ID()
	changeKept(t, dir)
	checkKept(t, dir)
	before := changes(s.Diff())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Stopped: nothing mounted, the top layer and the lease stay, and
	// neither check nor GC takes them for garbage.
	if isMounted(t, dir) {
		t.Fatalf("still mounted after Close")
	}
	if _, err := os.Stat(filepath.Join(session.UpperDir(st, id), "newfile")); err != nil {
		t.Errorf("top layer gone with the server: %v", err)
	}
	rec, err := session.Find(st, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := session.StatusOf(rec, nil); got != session.Stopped {
		t.Errorf("status %q, want stopped", got)
	}
	storetest.Check(t, st) // a stopped kept mount is neither a problem nor garbage
	gc, err := st.GC()
	if err != nil || len(gc.Mounts) != 0 || len(gc.Layers) != 0 {
		t.Errorf("gc of a stopped kept mount: %+v %v", gc, err)
	}
	if _, err := st.RemoveImage("demo", false); err == nil {
		t.Errorf("rmi of the image of a kept mount succeeded")
	}
	if got := changes(session.Diff(st, rec)); got != before {
		t.Errorf("diff of the stopped mount:\n%s\nwant:\n%s", got, before)
	}

	// Restarted on another mountpoint: everything is there, the diff is
	// the same, and it goes on working.
	dir2 := mountDir(t)
	s2, err := session.Resume(ctx, st, id, dir2, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s2.ID() != id || s2.Dir() != dir2 {
		t.Errorf("resumed as %s on %s", s2.ID(), s2.Dir())
	}
	if _, err := session.Resume(ctx, st, id, dir, session.Options{}); !errors.Is(err, layerstore.ErrInUse) {
		t.Errorf("Resume of a served mount: %v, want in use", err)
	}
	checkKept(t, dir2)
	if got := changes(s2.Diff()); got != before {
		t.Errorf("diff after restart:\n%s\nwant:\n%s", got, before)
	}
	// A write into the renamed file copies its data from the object.
	f, err := os.OpenFile(filepath.Join(dir2, "app/moved/only"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("X"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, want := mustRead(t, filepath.Join(dir2, "app/moved/only")), "X"+mustRead(t, filepath.Join(rootfs(t), "app/data/only"))[1:]; got != want {
		t.Errorf("app/moved/only after a write: %q, want %q", got, want)
	}
	// Unmounted from elsewhere (strata umount) while served: Unmount
	// returns once the server has stopped, the top layer stays.
	served := make(chan error, 1)
	go func() { served <- s2.Serve(ctx) }()
	if err := session.Unmount(ctx, st, dir2, session.UnmountOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if rec, err = session.Find(st, id); err != nil {
		t.Fatal(err)
	} else if got := session.StatusOf(rec, nil); got != session.Stopped {
		t.Errorf("status after Unmount: %q, want stopped", got)
	}
	if got := mustRead(t, filepath.Join(session.UpperDir(st, id), "newfile")); got != "hello\n" {
		t.Errorf("top layer after Unmount: newfile %q", got)
	}

	// Removed: gone for good.
	if err := session.Remove(st, id); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, st.MountDir(id))
	if ids := leases(t, st); len(ids) != 0 {
		t.Errorf("leases after Remove: %v", ids)
	}
	if _, err := session.Resume(ctx, st, id, dir, session.Options{}); !errors.Is(err, layerstore.ErrNotFound) {
		t.Errorf("Resume after Remove: %v, want not found", err)
	}
}

// A kept mount whose server was killed keeps its top layer: Reap detaches
// the dead mountpoint and marks it stopped, and Resume serves it again.
func TestSession_Keep_DeadServer(t *testing.T) {
	needFUSE(t)
	st := openStore(t)
	dir := mountDir(t)
	cmd, id := startServer(t, st, dir, true)
	mustWrite(t, filepath.Join(dir, "kept"), "still here\n")
	// No other process takes over a lease whose server runs.
	rec, err := session.Find(st, id)
	if err != nil {
		t.Fatal(err)
	}
	taken := *rec
	taken.PID = os.Getpid()
	if err := st.UpdateMount(taken); !errors.Is(err, layerstore.ErrInUse) {
		t.Errorf("UpdateMount of a lease another process serves: %v, want in use", err)
	}
	kill(t, cmd)
	if err := session.Reap(st, id); err != nil {
		t.Fatal(err)
	}
	if isMounted(t, dir) {
		t.Errorf("still mounted after Reap")
	}
	if rec, err = session.Find(st, id); err != nil {
		t.Fatal(err)
	}
	if got := session.StatusOf(rec, nil); got != session.Stopped {
		t.Errorf("status %q, want stopped", got)
	}
	s, err := session.Resume(context.Background(), st, id, "", session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "kept")); got != "still here\n" {
		t.Errorf("kept: %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := session.Remove(st, id); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, st.MountDir(id))
}

// Resume refuses a mount that was not kept.
func TestResume_NotKept(t *testing.T) {
	st, _, s := startDemo(t, session.Options{})
	if _, err := session.Resume(context.Background(), st, s.ID(), "", session.Options{}); !errors.Is(err, layerstore.ErrInvalid) {
		t.Errorf("Resume of a mount that is not kept: %v, want invalid", err)
	}
}

// Prepare makes a kept top layer nobody serves; the first Resume mounts it
// as new (the root has the image's attributes), later ones keep what was
// written; Remove deletes it.
func TestPrepare_ResumeRemove(t *testing.T) {
	needFUSE(t)
	st := openStore(t)
	ctx := context.Background()
	rec, err := session.Prepare(ctx, st, "demo", session.Options{ID: "prepared1"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.PID != 0 || !rec.Keep || rec.Running() {
		t.Errorf("prepared lease: %+v", rec)
	}
	if got := leases(t, st); len(got) != 1 {
		t.Fatalf("leases after Prepare: %v", got)
	}
	dir := mountDir(t)
	s, err := session.Resume(ctx, st, "prepared1", dir, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var root, ref syscall.Stat_t
	if err := syscall.Stat(dir, &root); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(rootfs(t), &ref); err != nil {
		t.Fatal(err)
	}
	if root.Mode != ref.Mode || root.Uid != ref.Uid {
		t.Errorf("root of a prepared mount: mode %o uid %d, the image's %o %d", root.Mode, root.Uid, ref.Mode, ref.Uid)
	}
	mustWrite(t, filepath.Join(dir, "etc/prepared"), "kept")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = session.Resume(ctx, st, "prepared1", dir, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "etc/prepared")); got != "kept" {
		t.Errorf("after a second resume: %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := session.Remove(st, "prepared1"); err != nil {
		t.Fatal(err)
	}
	if got := leases(t, st); len(got) != 0 {
		t.Errorf("leases after Remove: %v", got)
	}
	if _, err := os.Stat(session.UpperDir(st, "prepared1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("top layer after Remove: %v", err)
	}
}
