package snapshotter_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"

	"github.com/strata-dev/strata/internal/fixtures"
)

// activeKey is the server's name of the active snapshot of container id.
func (e *env) activeKey(id string) string {
	e.t.Helper()
	for name, k := range e.strataSnapshots() {
		if k == snapshotsapi.Kind_ACTIVE && strings.HasSuffix(name, "/"+id) {
			return name
		}
	}
	e.t.Fatalf("no active snapshot of container %s", id)
	return ""
}

// mountSource is the directory the bind mount of snapshot key names.
func (e *env) mountSource(key string) string {
	e.t.Helper()
	r, err := e.client().Mounts(context.Background(), &snapshotsapi.MountsRequest{Key: key})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(r.Mounts) != 1 || r.Mounts[0].Type != "bind" {
		e.t.Fatalf("mounts of %s: %v, want one bind mount", key, r.Mounts)
	}
	return r.Mounts[0].Source
}

// readInSnapshot reads file p of active snapshot key through its mount.
func (e *env) readInSnapshot(key, p string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.mountSource(key), p))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// restart stops the snapshotter (with sig) and starts it again.
func (e *env) restart(sig syscall.Signal) {
	e.t.Helper()
	if err := e.snap.Process.Signal(sig); err != nil {
		e.t.Fatal(err)
	}
	<-e.snapDone
	e.startSnapshotter()
}

// A snapshotter killed or stopped while a container runs and an unpack is
// half done comes back with both top layers as they were, and containerd
// and strata agree.
func TestContainerd_RestartWhileRunning(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			e := newEnv(t)
			e.ctr("images", "import", "--snapshotter", "strata", filepath.Join(fixtures.Dir(t), "demo.docker.tar"))
			e.ctr("run", "-d", "--snapshotter", "strata", image, "run3", "busybox", "sleep", "1000")
			e.ctr("tasks", "exec", "--exec-id", "w", "run3", "sh", "-c", "echo kept > /kept")
			key := e.activeKey("run3")
			// An unpack in progress: prepared, written, not committed.
			e.ctr("snapshots", "--snapshotter", "strata", "prepare", "unpacking", "")
			unpacking := e.activeKey("unpacking")
			src := e.mountSource(unpacking)
			if err := os.WriteFile(filepath.Join(src, "half"), []byte("applied\n"), 0o644); err != nil {
				t.Fatal(err)
			}

			e.restart(sig)
			e.agree()
			e.check()
			if got := e.readInSnapshot(key, "kept"); got != "kept\n" {
				t.Errorf("after the restart the top layer has /kept = %q, want %q", got, "kept\n")
			}
			if got := e.readInSnapshot(unpacking, "half"); got != "applied\n" {
				t.Errorf("after the restart the unpack has /half = %q, want %q", got, "applied\n")
			}
			e.ctr("snapshots", "--snapshotter", "strata", "commit", "unpacked", "unpacking")
			e.ctr("snapshots", "--snapshotter", "strata", "rm", "unpacked")

			// delete -f kills the task and waits for it to stop: a kill then a
			// plain delete races the task's exit (seen under load in CI).
			e.ctr("tasks", "delete", "-f", "run3")
			e.ctr("containers", "rm", "run3")
			// containerd's metadata says what stays; its removals reach the
			// snapshotter later, by its garbage collector.
			committed := 0
			for _, k := range e.containerdSnapshots() {
				if k == snapshotsapi.Kind_COMMITTED {
					committed++
				}
			}
			if left := e.waitSnapshots(committed); len(left) != committed {
				t.Errorf("after removing the container the server holds %v", left)
			}
			e.agree()
			e.check()
		})
	}
}
