// Command strata-mount serves one mount of an image: the server "strata
// mount -d" starts when strata-mount is installed beside strata (else
// strata serves the mount itself). It takes strata's global flags and
// those of "strata mount", and reports on --ready-fd as strata does:
//
//	strata-mount --root DIR [--lock-timeout S] [-D] --mount-id ID --ready-fd 3 [--read-only ...] -- IMAGE DIR
//
// It is a binary of its own so that a node's many mount servers link the
// store, the file system and the session and nothing of the CLI: each
// starts in less time and holds less memory for as long as its mount
// lives.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/strata-dev/strata/internal/mountserver"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "Error:", err)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	f := flag.NewFlagSet(mountserver.Binary, flag.ContinueOnError)
	root := f.String("root", layerstore.DefaultRoot(), "store directory")
	lockTimeout := f.Int("lock-timeout", 30, "seconds to wait for another strata process to release the store")
	var debug bool
	f.BoolVar(&debug, "debug", false, "log debug messages (and every FUSE request) to stderr")
	f.BoolVar(&debug, "D", false, "shorthand for --debug")
	var o session.Options
	var force bool
	f.StringVar(&o.ID, "mount-id", "", "mount ID (default: a new one)")
	readyFd := f.Int("ready-fd", 0, "file descriptor to report \"ready ID\" or \"error: ...\" on")
	f.BoolVar(&o.ReadOnly, "read-only", false, "mount read-only, without a top layer")
	f.BoolVar(&o.Suid, "suid", false, "honour the image's setuid and setgid bits")
	f.BoolVar(&o.Dev, "dev", false, "allow access to the image's device nodes")
	f.BoolVar(&o.AllowOther, "allow-other", true, "let users other than the one mounting use the mount")
	f.BoolVar(&o.NoPassthrough, "no-passthrough", false, "serve every read and write in the server")
	f.BoolVar(&o.NoWriteback, "no-writeback", false, "never use the writeback cache")
	f.BoolVar(&force, "force", false, "mount even on a directory that is not empty or is already a mount point")
	if err := f.Parse(args); err != nil {
		return err
	}
	if f.NArg() != 2 {
		return fmt.Errorf("want IMAGE DIR, got %q (see \"strata mount --help\")", f.Args())
	}
	report := mountserver.Reporter(*readyFd)
	err := serve(*root, time.Duration(*lockTimeout)*time.Second, debug, force, f.Arg(0), f.Arg(1), o, report)
	if err != nil {
		report("error: " + err.Error())
	}
	return err
}

func serve(root string, lockTimeout time.Duration, debug, force bool, ref, dir string, o session.Options, report func(string)) error {
	if root == "" {
		return errors.New("no store directory: name one with --root")
	}
	dir, err := mountserver.Check(dir, o.ReadOnly, force)
	if err != nil {
		return err
	}
	lvl := slog.LevelWarn
	if debug {
		lvl = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	o.Debug = debug
	o.OnBusy = func(dir string, _ error) {
		fmt.Fprintln(os.Stderr, "strata: "+mountserver.BusySentence(dir, mountserver.Holders(dir)))
	}
	st, err := layerstore.Open(root, &layerstore.Options{LockTimeout: lockTimeout, Logger: o.Logger})
	if err != nil {
		return err
	}
	defer st.Close()
	return mountserver.Serve(context.Background(), st, ref, dir, o, func(id string) { report("ready " + id) })
}
