package mountserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
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
// system while it rests (session.TrimMemory). A ready that fails (the
// asker gave up: ErrGaveUp) ends the mount at once.
func Serve(ctx context.Context, st *layerstore.Store, ref, dir string, o session.Options, ready func(id string) error) error {
	// Catch the signals before saying the mount is ready: a Ctrl-C right
	// after must unmount, not kill the server.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go trimMemory(ctx)
	return serveMount(ctx, st, ref, dir, o, ready)
}

// trimMemory hands freed memory back every 2 s until ctx ends: one loop
// a server process, however many mounts it serves.
func trimMemory(ctx context.Context) { session.TrimMemory(ctx, 2*time.Second) }

// serveMount is what every server runs for one mount, alone in its process
// (Serve) or beside others (RunShared): it starts the session, says ready,
// and serves until the mount or ctx ends.
func serveMount(ctx context.Context, st *layerstore.Store, ref, dir string, o session.Options, ready func(id string) error) error {
	sess, err := session.Start(ctx, st, ref, dir, o)
	if err != nil {
		return err
	}
	if err := ready(sess.ID()); err != nil {
		return errors.Join(err, sess.Close())
	}
	return sess.Serve(ctx)
}

// Run serves the mount c names, as both strata ("strata mount", and -d
// with a server of its own) and strata-mount do: it checks the
// mountpoint (Check), opens the store (OpenStore), serves (Serve), and
// says "ready ID" on rep once the mount is up, or "error: ..." and
// returns the error if it could not serve.
func Run(ctx context.Context, c Config, rep *Report) error {
	err := run(ctx, c, rep)
	if err != nil {
		rep.Say("error: " + err.Error())
	}
	return err
}

func run(ctx context.Context, c Config, rep *Report) error {
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
	return Serve(ctx, st, c.Ref, dir, o, rep.Ready)
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
