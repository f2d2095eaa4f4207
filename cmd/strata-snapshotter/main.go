// Command strata-snapshotter serves a strata store to containerd as a
// snapshotter (a proxy plugin), on a unix socket.
//
// It is a binary of its own, as containerd's proxy plugins usually are, so
// that the strata CLI links no gRPC or protobuf: their package init cost
// every strata command, a run --rm among them. "strata snapshotter" runs
// it.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/snapshotter"
)

const usage = `Usage: strata-snapshotter [--address SOCKET] [--root DIR] [--lock-timeout SECONDS] [-D]

Serve containerd's snapshots API on a unix socket (mode 0600), so that
containerd keeps image layers in the store and runs containers on strata
mounts. Add to containerd's config.toml:

  [proxy_plugins.strata]
    type = "snapshot"
    address = "/run/strata/snapshotter.sock"

and use it with "ctr run --snapshotter strata IMAGE ID CMD" (or
"ctr images pull/import --snapshotter strata"). Committed snapshots are
images tagged containerd-snapshot:HASH; active snapshots are mounts with a
kept top layer. SIGINT or SIGTERM stops cleanly: committed snapshots stay,
active ones come back when the snapshotter starts again.

Flags:
`

func main() {
	err := run(os.Args[1:])
	switch {
	case errors.Is(err, pflag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	f := pflag.NewFlagSet("strata-snapshotter", pflag.ContinueOnError)
	address := f.String("address", "/run/strata/snapshotter.sock", "unix socket to serve on")
	root := f.String("root", layerstore.DefaultRoot(), "store directory ($STRATA_ROOT; else /var/lib/strata as root, ~/.local/share/strata as a user)")
	lockTimeout := f.Int("lock-timeout", 30, "seconds to wait for another strata process to release the store")
	debug := f.BoolP("debug", "D", false, "log debug messages to stderr")
	f.Usage = func() { fmt.Fprint(os.Stderr, usage+f.FlagUsages()) }
	if err := f.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", f.Args())
	}
	if *root == "" {
		return fmt.Errorf("no store directory: this user has no home directory and neither STRATA_ROOT nor --root names one")
	}
	lvl := slog.LevelWarn
	if *debug {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	st, err := layerstore.Open(*root, &layerstore.Options{LockTimeout: time.Duration(*lockTimeout) * time.Second, Logger: log})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sn, err := snapshotter.Open(ctx, st, snapshotter.Options{Logger: log})
	if err != nil {
		return err
	}
	l, err := snapshotter.Listen(*address)
	if err != nil {
		return errors.Join(err, sn.Close())
	}
	return snapshotter.Serve(ctx, sn, l)
}
