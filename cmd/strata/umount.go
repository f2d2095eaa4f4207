package main

import (
	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/session"
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
deletes the top layer and the mount's lease, and "strata umount" returns only
once they are gone, so the space is free when it does.

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
	return session.Unmount(cmd.Context(), s, arg, session.UnmountOptions{Lazy: o.lazy})
}
