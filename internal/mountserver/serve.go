package mountserver

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// Check makes dir absolute and refuses what "strata mount" refuses: a dir
// that is not a directory, a mount this user may not make
// (CheckMountUser), and, unless force, a dir that holds files or is
// already a mount point (CheckMountpoint).
func Check(dir string, readOnly, force bool) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(dir); err != nil {
		return "", err
	} else if !st.IsDir() {
		return "", fmt.Errorf("%s: not a directory", dir)
	}
	if err := CheckMountUser(readOnly); err != nil {
		return "", err
	}
	if err := CheckMountpoint(dir, force); err != nil {
		return "", err
	}
	return dir, nil
}

// Serve mounts image ref of st on dir (session.Start with o), calls ready
// with the mount ID once the mount is up and SIGINT and SIGTERM are
// caught, and serves until the mount ends (an unmount from elsewhere) or
// ctx ends or a signal asks it to end, handing freed memory back to the
// system while it rests (session.TrimMemory).
func Serve(ctx context.Context, st *layerstore.Store, ref, dir string, o session.Options, ready func(id string)) error {
	sess, err := session.Start(ctx, st, ref, dir, o)
	if err != nil {
		return err
	}
	// Catch the signals before saying the mount is ready: a Ctrl-C right
	// after must unmount, not kill the server.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ready(sess.ID())
	go session.TrimMemory(ctx, 2*time.Second)
	return sess.Serve(ctx)
}

// Reporter is the server's side of the report pipe a parent that waits for
// the mount gives it: it writes one line on fd (0: nowhere) and closes it;
// later calls write nothing.
func Reporter(fd int) func(string) {
	if fd <= 0 {
		return func(string) {}
	}
	f := os.NewFile(uintptr(fd), "report")
	done := false
	return func(msg string) {
		if done {
			return
		}
		done = true
		fmt.Fprintln(f, strings.ReplaceAll(strings.TrimSpace(msg), "\n", "; ")) // one line
		f.Close()
	}
}
