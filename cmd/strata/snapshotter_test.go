package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/strata-dev/strata/internal/storetest"
)

// "strata snapshotter" runs strata-snapshotter (a binary of its own, so the
// CLI links no gRPC) in its place: the server answers containerd's API on
// the socket, with the store and flags strata was given, and the SIGTERM
// sent to strata's pid stops it cleanly.
func TestSnapshotter_ExecsItsBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the snapshotter serves FUSE mounts")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, snapshotterBinary), "../strata-snapshotter")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build strata-snapshotter: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := storetest.Root(t)
	sock := filepath.Join(t.TempDir(), "snap.sock")
	cmd := exec.Command(self, "--root", root, "snapshotter", "--address", sock)
	cmd.Env = append(os.Environ(), cliEnv+"=1", "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := snapshotsapi.NewSnapshotsClient(cc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.Usage(context.Background(), &snapshotsapi.UsageRequest{Key: "none"})
		if status.Code(err) == codes.NotFound {
			break
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("strata snapshotter exited: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer on %s in 30 s: %v\n%s", sock, err, out.String())
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "snapshotter")); err != nil || !fi.IsDir() {
		t.Errorf("the server's metadata is not under --root %s: %v", root, err)
	}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe"); err != nil || exe != filepath.Join(bin, snapshotterBinary) {
		t.Errorf("process %d runs %q (%v), want %s in strata's place", cmd.Process.Pid, exe, err, filepath.Join(bin, snapshotterBinary))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still serving 30 s after SIGTERM\n%s", out.String())
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after a clean stop: %v", err)
	}
}
