package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

type diffOptions struct{}

func newDiffCmd(g *globals) *cobra.Command {
	o := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff CONTAINER|DIR",
		Short: "Inspect changes to files or directories of a container or a mount",
		Long: `List the changes a container (its name or ID), or the mount on DIR (or the
mount of that ID), made to its image,
as docker diff does: A for an added path, C for a changed one, D for a deleted
one. A directory is listed when its own attributes changed or an entry was
added to or deleted from it. Works while the mount is live, and on a mount
whose server is gone.`,
		Example: `  strata diff /mnt/demo`,
		Args:    cobra.ExactArgs(1),
		GroupID: "mount",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(cmd, g, o, args[0])
		},
	}
	return cmd
}

func runDiff(cmd *cobra.Command, g *globals, _ *diffOptions, arg string) error {
	s, c, err := g.openContainers()
	if err != nil {
		return err
	}
	defer s.Close()
	var changes []fs.Change
	if _, cerr := c.Records().Get(arg); cerr == nil {
		changes, err = c.Diff(arg)
	} else {
		var rec *layerstore.MountRecord
		if rec, err = session.Find(s, arg); err == nil {
			changes, err = session.Diff(s, rec)
		}
	}
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	for _, c := range changes {
		fmt.Fprintln(out, c)
	}
	return nil
}
