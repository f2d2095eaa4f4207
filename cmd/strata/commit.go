package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

type commitOptions struct {
	message string
	author  string
	quiet   bool
}

func newCommitCmd(g *globals) *cobra.Command {
	o := &commitOptions{}
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER|DIR [REPOSITORY[:TAG]]",
		Short: "Create a new image from a container's or a mount's changes",
		Long: `Turn the changes of a container (its name or ID), or of the mount on DIR (or
the mount of that ID), into a new layer
on top of its image, and store the result as a new image with a history entry,
named REPOSITORY[:TAG] if given (else it is dangling). Prints the new image's
ID. The mount goes on as it was.

The layer is an OCI layer: whiteouts for deleted paths, opaque markers for
directories that replace the image's, extended attributes, hard links. It is
read from the top layer while the mount is live, so files being written
while it runs may be caught halfway: stop writers first for a consistent
image.`,
		Example: `  strata commit /mnt/demo demo:patched
  strata commit -m "add config" -a "Jane <jane@example.com>" /mnt/demo`,
		Args:    cobra.RangeArgs(1, 2),
		GroupID: "mount",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCommit(cmd, g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.message, "message", "m", "", "commit message")
	f.StringVarP(&o.author, "author", "a", "", `author (e.g., "Jane <jane@example.com>")`)
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress the progress output")
	return cmd
}

func runCommit(cmd *cobra.Command, g *globals, o *commitOptions, args []string) error {
	var names []string
	if len(args) == 2 {
		name, err := layerstore.ParseTag(args[1])
		if err != nil {
			return err
		}
		names = []string{name}
	}
	s, c, err := g.openContainers()
	if err != nil {
		return err
	}
	defer s.Close()
	// The top layer is read and stored in one step: the bar shows the bytes
	// read, then "Committing" until the image is stored.
	pr := newProgress(cmd.ErrOrStderr(), o.quiet, "Committing", "Storing the image", 1)
	defer pr.abort() // on the paths that do not end it
	var img layerstore.Image
	if _, cerr := c.Records().Get(args[0]); cerr == nil {
		img, err = c.Commit(cmd.Context(), args[0], container.CommitOptions{Names: names, Message: o.message, Author: o.author, Progress: pr.update})
	} else {
		var rec *layerstore.MountRecord
		if rec, err = session.Find(s, args[0]); err != nil {
			return err
		}
		img, err = session.Commit(cmd.Context(), s, rec, session.CommitOptions{
			Names:    names,
			Message:  o.message,
			Author:   o.author,
			Progress: pr.update,
		})
	}
	if err != nil {
		pr.done("", err)
		return err
	}
	what := "Committed " + truncateID(img.ID)
	if len(names) > 0 {
		what = "Committed " + names[0]
	}
	pr.done(what, nil)
	fmt.Fprintln(cmd.OutOrStdout(), img.ID)
	return nil
}
