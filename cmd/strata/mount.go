package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/internal/mountserver"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

type mountOptions struct {
	readOnly      bool
	detach        bool
	suid          bool
	dev           bool
	noPassthrough bool
	noWriteback   bool
	allowOther    bool
	force         bool

	// Set by "mount -d" for the server it starts.
	id      string
	readyFd int
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
	f.BoolVar(&o.readOnly, "read-only", false, "mount read-only, without a top layer")
	f.BoolVarP(&o.detach, "detach", "d", false, "run the server in the background; return when the mount is ready")
	f.BoolVar(&o.suid, "suid", false, "honour the image's setuid and setgid bits (any user who can reach the mount can run its setuid-root programs)")
	f.BoolVar(&o.dev, "dev", false, "allow access to the image's device nodes (any user who can reach the mount can open them)")
	f.BoolVar(&o.noPassthrough, "no-passthrough", false, "serve every read and write in the server, even where FUSE passthrough is available (a writable mount then has the writeback cache)")
	f.BoolVar(&o.noWriteback, "no-writeback", false, "never use the writeback cache (with --no-passthrough, every write reaches the server as it happens)")
	f.BoolVar(&o.allowOther, "allow-other", true, "let users other than the one mounting use the mount")
	f.BoolVar(&o.force, "force", false, "mount even on a directory that is not empty or is already a mount point (hiding what is there)")
	f.StringVar(&o.id, "mount-id", "", "mount ID (set by -d for the server it starts)")
	f.IntVar(&o.readyFd, "ready-fd", 0, "file descriptor to report readiness on (set by -d)")
	_ = f.MarkHidden("mount-id")
	_ = f.MarkHidden("ready-fd")
	return cmd
}

func runMount(cmd *cobra.Command, g *globals, o *mountOptions, ref, dir string) error {
	dir, err := mountserver.Check(dir, o.readOnly, o.force)
	if err != nil {
		return err
	}
	if o.detach && o.readyFd == 0 {
		return startDetached(cmd, g, o, ref, dir)
	}
	report := reporter(o.readyFd)
	err = serveMount(cmd, g, o, ref, dir, func(id string) {
		report("ready " + id)
		if o.readyFd == 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s mounted on %s (mount %s); Ctrl-C unmounts\n", ref, dir, id)
		}
	})
	if err != nil {
		report("error: " + err.Error())
	}
	return err
}

// serveMount runs a mount session: it starts it, calls ready, and serves
// until the mount ends or a signal asks it to end.
func serveMount(cmd *cobra.Command, g *globals, o *mountOptions, ref, dir string, ready func(id string)) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	return mountserver.Serve(cmd.Context(), s, ref, dir, session.Options{
		ID:            o.id,
		ReadOnly:      o.readOnly,
		Suid:          o.suid,
		Dev:           o.dev,
		AllowOther:    o.allowOther,
		NoPassthrough: o.noPassthrough,
		NoWriteback:   o.noWriteback,
		Logger:        g.logger(),
		Debug:         g.debug,
		OnBusy: func(dir string, _ error) {
			fmt.Fprintln(cmd.ErrOrStderr(), "strata: "+mountserver.BusySentence(dir, mountserver.Holders(dir)))
		},
	}, ready)
}

// startDetached runs the server as a child in a session of its own and
// returns once it reports the mount ready (or fails).
func startDetached(cmd *cobra.Command, g *globals, o *mountOptions, ref, dir string) error {
	// The server opens the store; this process only needs the log's place.
	id := session.NewID()
	mdir := layerstore.MountDirIn(g.root, id)
	if err := os.MkdirAll(mdir, 0o700); err != nil {
		return err
	}
	args := []string{"--mount-id", id, "--ready-fd", "3",
		"--read-only=" + strconv.FormatBool(o.readOnly),
		"--suid=" + strconv.FormatBool(o.suid),
		"--dev=" + strconv.FormatBool(o.dev),
		"--no-passthrough=" + strconv.FormatBool(o.noPassthrough),
		"--no-writeback=" + strconv.FormatBool(o.noWriteback),
		"--allow-other=" + strconv.FormatBool(o.allowOther),
		"--force=" + strconv.FormatBool(o.force),
		"--", ref, dir}
	// strata-mount, where it is installed beside strata, takes the same
	// flags without the command's name; else strata serves it itself.
	logPath := filepath.Join(mdir, "server.log")
	bin, why := mountserver.Find()
	if bin == "" {
		args = append([]string{"mount"}, args...)
		g.logger().Debug("mount -d: served by strata itself", "why", why)
		if !strings.Contains(why, "no such file") {
			_ = appendLog(logPath, "strata: serving the mount with strata itself, not "+mountserver.Binary+": "+why)
		}
	}
	line, err := detachExec(g, bin, logPath, args...)
	if line == "ready "+id {
		fmt.Fprintln(cmd.OutOrStdout(), id)
		return nil
	}
	if err == nil {
		switch {
		case line == "":
			err = errors.New("the mount server ended without a word")
		case strings.HasPrefix(line, "error: "):
			err = errors.New(strings.TrimPrefix(line, "error: "))
		default:
			err = fmt.Errorf("the mount server %s said %q, not \"ready %s\"", serverName(bin), line, id)
		}
	}
	_ = os.RemoveAll(mdir)
	return err
}

// serverName is how errors name the program detachExec ran for bin.
func serverName(bin string) string {
	if bin == "" {
		if self, err := os.Executable(); err == nil {
			return self
		}
		return "strata"
	}
	return bin
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
