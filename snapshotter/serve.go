package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/strata-dev/strata/session"
)

// trimInterval is how often Serve returns freed memory, as strata mount
// does.
const trimInterval = 2 * time.Second

// Listen makes the unix socket at address (mode 0600: only root, as
// containerd runs, may call it), replacing a stale one a killed server left.
func Listen(address string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(address), 0o700); err != nil {
		return nil, err
	}
	if err := os.Remove(address); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("stale socket %s: %w", address, err)
	}
	l, err := net.Listen("unix", address)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(address, 0o600); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// Serve serves sn on l until ctx is done; then it stops taking calls, lets
// the running ones finish, closes sn and removes the socket. Meanwhile the
// process hands the memory its mounts and calls freed back to the system
// (session.TrimMemory), as a strata mount server does: resting snapshot
// mounts keep only their live heap.
func Serve(ctx context.Context, sn *Snapshotter, l net.Listener) error {
	tctx, stopTrim := context.WithCancel(ctx)
	defer stopTrim()
	go session.TrimMemory(tctx, trimInterval)
	g := grpc.NewServer()
	NewService(sn).Register(g)
	done := make(chan error, 1)
	go func() { done <- g.Serve(l) }()
	var err error
	select {
	case <-ctx.Done():
		g.GracefulStop()
		err = <-done
	case err = <-done:
	}
	return errors.Join(err, sn.Close())
}
