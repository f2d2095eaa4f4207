// Package conformance runs containerd's snapshotter test suite against
// strata's snapshots server through containerd's own proxy client, the way
// containerd talks to it. It is a module of its own so that containerd's
// module stays out of strata's go.mod.
package conformance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/snapshotter"
)

// newSnapshotter serves a fresh store under root on a socket and returns
// containerd's proxy client of it; close stops both and checks the store.
func newSnapshotter(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	st, err := layerstore.Open(filepath.Join(root, "store"), nil)
	if err != nil {
		return nil, nil, err
	}
	sn, err := snapshotter.Open(ctx, st, snapshotter.Options{})
	if err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(root, "s.sock")
	l, err := snapshotter.Listen(sock)
	if err != nil {
		return nil, nil, errors.Join(err, sn.Close())
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- snapshotter.Serve(sctx, sn, l) }()
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		stop()
		return nil, nil, err
	}
	ps := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(cc), "strata")
	closeFn := func() error {
		cc.Close()
		stop()
		if err := <-done; err != nil {
			return err
		}
		rep, err := st.Check(false)
		if err != nil {
			return err
		}
		if len(rep.Problems) > 0 {
			return &checkError{rep.Problems}
		}
		return nil
	}
	return ps, closeFn, nil
}

type checkError struct{ problems []error }

func (e *checkError) Error() string { return "strata check: " + e.problems[0].Error() }

func TestSnapshotterSuite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE and bind mounts")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	testsuite.SnapshotterSuite(t, "strata", newSnapshotter)
}
