package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
)

// Serve listens on the unix socket at address (mode 0600: only root, as
// containerd runs, may call it) and serves sn until ctx is done; then it
// stops taking calls, lets the running ones finish, and closes sn.
func Serve(ctx context.Context, sn *Snapshotter, address string) error {
	if err := os.MkdirAll(filepath.Dir(address), 0o700); err != nil {
		return err
	}
	if err := os.Remove(address); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stale socket %s: %w", address, err)
	}
	l, err := net.Listen("unix", address)
	if err != nil {
		return err
	}
	if err := os.Chmod(address, 0o600); err != nil {
		return errors.Join(err, l.Close())
	}
	g := grpc.NewServer()
	NewService(sn).Register(g)
	done := make(chan error, 1)
	go func() { done <- g.Serve(l) }()
	select {
	case <-ctx.Done():
		g.GracefulStop()
		err = <-done
	case err = <-done:
	}
	return errors.Join(err, sn.Close(), ignoreMissing(os.Remove(address)))
}

func ignoreMissing(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
