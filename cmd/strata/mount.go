package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/internal/mountserver"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

type mountOptions struct {
	cfg      mountserver.Config // the mount's flags; -d sets ID and ReadyFd for its server
	detach   bool
	protocol int // set by -d for the server it starts
}

func newMountCmd(g *globals) *cobra.Command {
	o := &mountOptions{}
	cmd := &cobra.Command{
		Use:   "mount [OPTIONS] IMAGE DIR",
		Short: "Mount an image on a directory",
		Long: `Mount IMAGE (name[:tag], ID or unique ID prefix) on the directory DIR through
FUSE. Lookups and reads come from the image's layers; changes go to an
ephemeral top layer in the store (see "strata mounts"), which "strata diff"
lists and "strata commit" turns into a new image. Unmounting deletes it.

The server runs in the foreground until the mount ends: Ctrl-C (SIGINT) or
SIGTERM unmounts cleanly, as does "strata umount DIR" from elsewhere. With -d
it runs in the background, and the command returns (printing the mount ID)
once the mount is ready; its log is server.log in the mount's directory.

The mount is nosuid and nodev: an image's setuid files run with the caller's
own rights and its device nodes cannot be opened. --suid and --dev lift that;
on a mount other users can reach, they hand every local user the image's
setuid-root programs (a root shell) and its device nodes (raw access to the
host's disks or memory, if the image says so): use them only for images you
trust, on a directory only trusted users can reach. Other users may use the
mount (--allow-other, the kernel checks permissions as on any directory), so
that programs in the image running as other uids can read it. Large lower
files are read through FUSE passthrough where the kernel has it.

DIR must be empty and not already a mount point (the mount would hide what
is there); --force mounts anyway. Ctrl-C of a mount in use says which
processes hold it; it unmounts once they let go, or at once with "strata
umount -l DIR". A writable mount needs root (its top layer keeps whiteouts
and owners as trusted.* extended attributes); other users can mount
--read-only where /dev/fuse is usable.`,
		Example: `  strata mount demo /mnt/demo
  strata mount -d --read-only demo:latest /mnt/ro`,
		Args:              cobra.MaximumNArgs(2), // runMount: 2, or none with --listen
		GroupID:           "mount",
		ValidArgsFunction: completeImages(g, 1, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd, g, o, args)
		},
	}
	f := cmd.Flags()
	o.cfg.BindBools(f.BoolVar)
	f.BoolVarP(&o.detach, "detach", "d", false, "run the server in the background; return when the mount is ready")
	f.StringVar(&o.cfg.Session.ID, "mount-id", "", "mount ID (set by -d for the server it starts)")
	f.IntVar(&o.cfg.ReadyFd, "ready-fd", 0, "file descriptor to report readiness on (set by -d)")
	f.IntVar(&o.protocol, "protocol", 0, "the mount server protocol of the strata that started this one (set by -d)")
	_ = f.MarkHidden("mount-id")
	_ = f.MarkHidden("ready-fd")
	f.StringVar(&o.cfg.Listen, "listen", "", "serve many mounts as a shared server, on this socket (set by -d)")
	f.IntVar(&o.cfg.MaxMounts, "max-mounts", mountserver.DefaultMaxMounts, "with --listen: serve at most this many mounts (set by -d)")
	f.DurationVar(&o.cfg.Idle, "idle", mountserver.DefaultIdle, "with --listen: exit once no mount has been served for this long (set by -d)")
	_ = f.MarkHidden("protocol")
	for _, n := range []string{"listen", "max-mounts", "idle"} {
		_ = f.MarkHidden(n)
	}
	return cmd
}

func runMount(cmd *cobra.Command, g *globals, o *mountOptions, args []string) error {
	c := o.cfg
	c.Root, c.LockTimeout, c.Debug = g.root, secs(g.lockTimeout), g.debug
	rep, err := mountserver.NewReport(c.ReadyFd)
	if err != nil {
		return err
	}
	if cmd.Flags().Changed("protocol") {
		if err := mountserver.CheckProtocol(o.protocol); err != nil {
			rep.Say("error: " + err.Error())
			return err
		}
	}
	if c.Listen != "" { // a shared server, as strata-mount --listen
		if len(args) != 0 || c.MaxMounts < 1 {
			err := fmt.Errorf("mount --listen takes no IMAGE DIR, and --max-mounts at least 1")
			rep.Say("error: " + err.Error())
			return err
		}
		return mountserver.RunShared(cmd.Context(), c, rep)
	}
	if len(args) != 2 {
		return fmt.Errorf("\"strata mount\" requires 2 arguments, IMAGE and DIR (got %d)", len(args))
	}
	ref, dir := args[0], args[1]
	c.Ref = ref
	if o.detach && c.ReadyFd == 0 {
		if c.Dir, err = mountserver.Check(dir, c.Session.ReadOnly, c.Force); err != nil {
			return err
		}
		return startDetached(cmd, g, c)
	}
	c.Dir = dir // Run checks it
	c.Users, c.Stderr = g.imageUsers, cmd.ErrOrStderr()
	rep.Then = func(line string) {
		if id, ok := strings.CutPrefix(line, "ready "); ok && c.ReadyFd == 0 {
			abs, _ := filepath.Abs(dir) // as Run mounted it
			fmt.Fprintf(cmd.ErrOrStderr(), "%s mounted on %s (mount %s); Ctrl-C unmounts\n", ref, abs, id)
		}
	}
	return mountserver.Run(cmd.Context(), c, rep)
}

// mountsPerServerEnv sets how many mounts a shared server serves at most
// (default mountserver.DefaultMaxMounts); 1 serves each mount in a process
// of its own.
const mountsPerServerEnv = "STRATA_MOUNTS_PER_SERVER"

// serverIdleEnv sets how long a shared server waits for another mount
// once its last has ended (a Go duration; default mountserver.DefaultIdle).
const serverIdleEnv = "STRATA_MOUNT_SERVER_IDLE"

// mountsPerServer reads mountsPerServerEnv.
func mountsPerServer() (int, error) {
	v := os.Getenv(mountsPerServerEnv)
	if v == "" {
		return mountserver.DefaultMaxMounts, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a number of mounts, 1 or more", mountsPerServerEnv, v)
	}
	return n, nil
}

// startDetached has c served in the background and returns once the
// mount is ready (or failed): by a shared server of the store, started if
// none has room (startShared), or, with --debug (its log is every FUSE
// request) or STRATA_MOUNTS_PER_SERVER=1, by a server of its own
// (startOwn). Ctrl-C meanwhile makes the server give the mount up.
func startDetached(cmd *cobra.Command, g *globals, c mountserver.Config) error {
	per, err := mountsPerServer()
	if err != nil {
		return err
	}
	if c.Root, err = filepath.Abs(c.Root); err != nil {
		return err
	}
	// The server opens the store; this process only needs the log's place.
	id := session.NewID()
	c.Session.ID = id
	mdir := layerstore.MountDirIn(c.Root, id)
	if err := os.MkdirAll(mdir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(mdir, "server.log")
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if c.Debug || per == 1 {
		err = startOwn(ctx, g, c, logPath)
	} else {
		err = startShared(ctx, g, c, per, logPath)
	}
	if err == nil {
		fmt.Fprintln(cmd.OutOrStdout(), id)
		return nil
	}
	if !errors.Is(err, mountserver.ErrInterrupted) {
		reapFailed(g, c.Root, id) // a server that died midway left a lease, perhaps a mount
	}
	_ = os.RemoveAll(mdir)
	return err
}

// reapFailed cleans up after a mount whose server failed or died before it
// was ready: its lease and mountpoint, if it left them (session.Reap; a
// mount its server still serves is left alone).
func reapFailed(g *globals, root, id string) {
	st, err := layerstore.Open(root, &layerstore.Options{LockTimeout: secs(g.lockTimeout)})
	if err != nil {
		return
	}
	defer st.Close()
	if err := session.Reap(st, id); err != nil {
		g.logger().Warn("mount -d: clean up after the failed mount", "mount", id, "err", err)
	}
}

// startShared asks the store's shared servers for the mount
// (mountserver.Client), starting one that takes up to per mounts where
// none has room: strata-mount where a usable one is installed beside
// strata, else (or if it refuses, being of another build) strata itself.
func startShared(ctx context.Context, g *globals, c mountserver.Config, per int, logPath string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	key, err := mountserver.NSKey(self)
	if err != nil {
		return err
	}
	idle := mountserver.DefaultIdle
	if v := os.Getenv(serverIdleEnv); v != "" {
		if idle, err = time.ParseDuration(v); err != nil || idle <= 0 {
			return fmt.Errorf("%s=%q: want a duration such as 1s", serverIdleEnv, v)
		}
	}
	cl := mountserver.Client{Root: c.Root, Key: key, Spawn: func(ctx context.Context, sock string) error {
		sc := mountserver.Config{Root: c.Root, LockTimeout: c.LockTimeout, ReadyFd: 3, Listen: sock, MaxMounts: per, Idle: idle}
		line, bin, err := serverFor(ctx, g, logPath, sc.ServerArgs(), append([]string{"mount"}, sc.ServerArgs()...), mountserver.LogOf(sock))
		return serverSaid(line, bin, err, "listening")
	}}
	_, err = cl.Mount(ctx, c)
	return err
}

// startOwn runs a server of the mount's own (today's one process a mount)
// and returns once it reports the mount ready (or fails).
func startOwn(ctx context.Context, g *globals, c mountserver.Config, logPath string) error {
	c.ReadyFd = 3
	line, bin, err := serverFor(ctx, g, logPath, c.Args(), append([]string{"mount"}, c.Args()...), logPath)
	return serverSaid(line, bin, err, "ready "+c.Session.ID)
}

// serverSaid is nil if a server bin started with startServer said want,
// else what went wrong.
func serverSaid(line, bin string, err error, want string) error {
	var ended *endedError
	switch {
	case line == want && err == nil:
		return nil
	case errors.As(err, &ended):
		return fmt.Errorf("the mount server %w", err)
	case err != nil:
		return err
	case line == "":
		return fmt.Errorf("the mount server %s ended without a word", bin)
	case strings.HasPrefix(line, "error: "):
		return errors.New(strings.TrimPrefix(line, "error: "))
	}
	return fmt.Errorf("the mount server %s said %q, not %q", bin, line, want)
}

// serverFor starts a mount server (startServer, its output to serverLog)
// and returns its first line and which binary it was: strata-mount with
// leanArgs where a usable one is installed beside strata
// (mountserver.Find), else (or if it refuses, being of another build:
// mountserver.IsRefusal) strata itself with selfArgs. Why strata serves
// itself goes to the mount's log, mountLog.
func serverFor(ctx context.Context, g *globals, mountLog string, leanArgs, selfArgs []string, serverLog string) (line, bin string, err error) {
	fallback := func(why string) { // why not strata-mount
		g.logger().Debug("mount -d: served by strata itself", "why", why)
		_ = appendLog(mountLog, "strata: serving the mount with strata itself, not "+mountserver.Binary+": "+why)
	}
	bin, why := mountserver.Find()
	if bin != "" {
		line, err = startServer(ctx, bin, leanArgs, serverLog)
		if !mountserver.IsRefusal(line, err) {
			return line, bin, err
		}
		what := strings.TrimPrefix(line, "error: ")
		if line == "" {
			what = err.Error()
		}
		fallback(bin + " refused: " + what)
	} else if !errors.Is(why, os.ErrNotExist) {
		fallback(why.Error())
	}
	if bin, err = os.Executable(); err != nil {
		return "", "", err
	}
	line, err = startServer(ctx, bin, selfArgs, serverLog)
	return line, bin, err
}

// appendLog adds a line to the log at path.
func appendLog(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, line)
	return errors.Join(err, f.Close())
}
