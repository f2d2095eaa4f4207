package mountserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Run serves the mount c names, as both strata ("strata mount", and -d
// where no strata-mount is usable) and strata-mount do: it checks the
// mountpoint (Check), opens the store (OpenStore), serves (Serve), and
// says "ready ID" on report once the mount is up, or "error: ..." and
// returns the error if it could not serve.
func Run(ctx context.Context, c Config, report func(string)) error {
	err := run(ctx, c, report)
	if err != nil {
		report("error: " + err.Error())
	}
	return err
}

func run(ctx context.Context, c Config, report func(string)) error {
	dir, err := Check(c.Dir, c.Session.ReadOnly, c.Force)
	if err != nil {
		return err
	}
	o := c.Session
	o.Logger, o.Debug = Logger(c.Debug), c.Debug
	stderr := c.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	o.OnBusy = func(dir string, _ error) {
		fmt.Fprintln(stderr, "strata: "+BusySentence(dir, Holders(dir)))
	}
	st, err := OpenStore(c.Root, c.LockTimeout, o.Logger, c.Users)
	if err != nil {
		return err
	}
	defer st.Close()
	return Serve(ctx, st, c.Ref, dir, o, func(id string) { report("ready " + id) })
}

// Logger is what strata and its mount servers log with: warnings, and with
// debug everything, to stderr.
func Logger(debug bool) *slog.Logger {
	lvl := slog.LevelWarn
	if debug {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// OpenStore opens the store at root as every strata command and mount
// server does, saying what to do where there is no store directory to use.
func OpenStore(root string, lockTimeout time.Duration, logger *slog.Logger, users func() ([]layerstore.ImageUser, error)) (*layerstore.Store, error) {
	if root == "" {
		return nil, fmt.Errorf("no store directory: this user has no home directory and neither STRATA_ROOT nor --root names one; put the store in a directory of your own, e.g. --root /var/tmp/strata-%d (or export STRATA_ROOT=…)", os.Geteuid())
	}
	s, err := layerstore.Open(root, &layerstore.Options{LockTimeout: lockTimeout, Logger: logger, Users: users})
	if err != nil && os.Getenv("STRATA_ROOT") == "" && root == layerstore.DefaultRoot() && (errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist)) {
		return nil, fmt.Errorf("%w\n(the default store %s cannot be made here: name a directory of your own with --root DIR or STRATA_ROOT=DIR)", err, root)
	}
	return s, err
}

// Reporter is the server's side of the report pipe a parent that waits for
// the mount gives it: it writes one line on fd (0: nowhere) and closes it;
// later calls write nothing. An fd that is not a pipe or a socket is
// refused: a report is never written into a file the server happened to
// inherit.
func Reporter(fd int) (func(string), error) {
	if fd <= 0 {
		return func(string) {}, nil
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("report fd %d: %w", fd, err)
	}
	if t := st.Mode & syscall.S_IFMT; t != syscall.S_IFIFO && t != syscall.S_IFSOCK {
		return nil, fmt.Errorf("report fd %d is not a pipe or a socket (file type %#o)", fd, t)
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
	}, nil
}
