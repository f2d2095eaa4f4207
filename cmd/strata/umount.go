package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
	"golang.org/x/sys/unix"
)

type umountOptions struct {
	lazy bool
}

func newUmountCmd(g *globals) *cobra.Command {
	o := &umountOptions{}
	cmd := &cobra.Command{
		Use:     "umount [OPTIONS] DIR",
		Aliases: []string{"unmount"},
		Short:   "Unmount a mount and delete its top layer",
		Long: `Unmount the strata mount on DIR (or the mount of that ID). Its server then
deletes the top layer and the mount's lease, and "strata umount" waits for it.

A mount whose server is gone ("Transport endpoint is not connected") is
unmounted and cleaned up here. A mount in use (open files, a working
directory in it) is refused unless --lazy, which detaches it now and leaves
the rest to the server when the last user is gone.`,
		Example: `  strata umount /mnt/demo
  strata umount -l /mnt/demo`,
		Args:    cobra.ExactArgs(1),
		GroupID: "mount",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUmount(cmd, g, o, args[0])
		},
	}
	cmd.Flags().BoolVarP(&o.lazy, "lazy", "l", false, "detach the mount now, even in use; clean up when it is no longer used")
	return cmd
}

func runUmount(cmd *cobra.Command, g *globals, o *umountOptions, arg string) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	rec, err := findMount(s, arg)
	if err != nil && !errors.Is(err, layerstore.ErrNotFound) {
		return err
	}
	dir, _ := filepath.Abs(arg) // no stat: a stale mount answers ENOTCONN
	if rec != nil {
		dir = rec.Dir
	}
	table, err := mountTable()
	if err != nil {
		return err
	}
	fstype, mounted := table[dir]
	switch {
	case rec == nil && !mounted:
		return fmt.Errorf("%s: not a strata mount: %w", arg, layerstore.ErrNotFound)
	case rec == nil && !strings.HasPrefix(fstype, "fuse.strata"):
		return fmt.Errorf("%s: a %s mount, not strata's", dir, fstype)
	}
	if mounted {
		flags := 0
		if o.lazy {
			flags = unix.MNT_DETACH
		}
		if err := unix.Unmount(dir, flags); err != nil && !errors.Is(err, unix.EINVAL) {
			if errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("%s: the mount is busy (open files, or a working directory in it); close them, or detach it with --lazy: %w", dir, err)
			}
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	if rec == nil {
		return nil // a strata mount without a lease: nothing more to clean
	}
	if rec.Alive() {
		if o.lazy {
			return nil // the server cleans up when the last user is gone
		}
		// The server sees the unmount, drops the lease and the top
		// layer, and exits; wait for it.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if !rec.Alive() {
				break
			}
			if gone, err := leaseGone(s, rec.ID); err != nil || gone {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: unmounted, but server %d has not cleaned up yet; \"strata mounts\" shows it", dir, rec.PID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// No server (any more): drop what it left.
	return s.RemoveMount(rec.ID)
}

// leaseGone reports whether mount id has no lease any more.
func leaseGone(s *layerstore.Store, id string) (bool, error) {
	recs, err := s.Mounts()
	if err != nil {
		return false, err
	}
	for _, m := range recs {
		if m.ID == id {
			return false, nil
		}
	}
	return true, nil
}
