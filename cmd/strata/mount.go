package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
		Args:              cobra.ExactArgs(2),
		GroupID:           "mount",
		ValidArgsFunction: completeImages(g, 1, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd, g, o, args[0], args[1])
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
	_ = f.MarkHidden("protocol")
	return cmd
}

func runMount(cmd *cobra.Command, g *globals, o *mountOptions, ref, dir string) error {
	c := o.cfg
	c.Root, c.LockTimeout, c.Debug, c.Ref = g.root, secs(g.lockTimeout), g.debug, ref
	report, err := mountserver.Reporter(c.ReadyFd)
	if err != nil {
		return err
	}
	if cmd.Flags().Changed("protocol") {
		if err := mountserver.CheckProtocol(o.protocol); err != nil {
			report("error: " + err.Error())
			return err
		}
	}
	if o.detach && c.ReadyFd == 0 {
		if c.Dir, err = mountserver.Check(dir, c.Session.ReadOnly, c.Force); err != nil {
			return err
		}
		return startDetached(cmd, g, c)
	}
	c.Dir = dir // Run checks it
	c.Users, c.Stderr = g.imageUsers, cmd.ErrOrStderr()
	return mountserver.Run(cmd.Context(), c, func(line string) {
		report(line)
		if id, ok := strings.CutPrefix(line, "ready "); ok && c.ReadyFd == 0 {
			abs, _ := filepath.Abs(dir) // as Run mounted it
			fmt.Fprintf(cmd.ErrOrStderr(), "%s mounted on %s (mount %s); Ctrl-C unmounts\n", ref, abs, id)
		}
	})
}

// startDetached runs the server of c as a child in a session of its own
// and returns once it reports the mount ready (or fails): strata-mount
// where a usable one is installed beside strata (mountserver.Find), else
// (or if it refuses, being of another build) strata itself.
func startDetached(cmd *cobra.Command, g *globals, c mountserver.Config) error {
	// The server opens the store; this process only needs the log's place.
	id := session.NewID()
	c.Session.ID, c.ReadyFd = id, 3
	mdir := layerstore.MountDirIn(g.root, id)
	if err := os.MkdirAll(mdir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(mdir, "server.log")
	fallback := func(why string) { // why not strata-mount
		g.logger().Debug("mount -d: served by strata itself", "why", why)
		_ = appendLog(logPath, "strata: serving the mount with strata itself, not "+mountserver.Binary+": "+why)
	}
	bin, why := mountserver.Find()
	var line string
	var err error
	if bin != "" {
		line, err = startServer(bin, c.Args(), logPath)
		if mountserver.IsRefusal(line) {
			fallback(bin + " refused: " + strings.TrimPrefix(line, "error: "))
			bin = ""
		}
	} else if !errors.Is(why, os.ErrNotExist) {
		fallback(why.Error())
	}
	if bin == "" {
		self, serr := os.Executable()
		if serr != nil {
			return serr
		}
		line, err = startServer(self, append([]string{"mount"}, c.Args()...), logPath)
		bin = self
	}
	if line == "ready "+id {
		fmt.Fprintln(cmd.OutOrStdout(), id)
		return nil
	}
	var ended *endedError
	switch {
	case errors.As(err, &ended):
		err = fmt.Errorf("the mount server %w", err)
	case err != nil:
	case line == "":
		err = fmt.Errorf("the mount server %s ended without a word", bin)
	case strings.HasPrefix(line, "error: "):
		err = errors.New(strings.TrimPrefix(line, "error: "))
	default:
		err = fmt.Errorf("the mount server %s said %q, not \"ready %s\"", bin, line, id)
	}
	_ = os.RemoveAll(mdir)
	return err
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
