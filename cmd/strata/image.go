package main

import (
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
)

// newImageCmd is "strata image", the parent of the image commands, as
// "docker image" is. The top-level forms (strata images, rmi, tag, history,
// inspect) are made by the same constructors.
func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "image",
		Short:   "Manage images",
		Args:    cobra.NoArgs,
		GroupID: "image",
	}
	cmd.AddCommand(
		asSubcommand(newImagesCmd(g), "ls [OPTIONS] [REPOSITORY[:TAG]]", "list"),
		asSubcommand(newRmiCmd(g), "rm [OPTIONS] IMAGE [IMAGE...]", "remove", "rmi"),
		newPruneCmd(g),
		asSubcommand(newInspectCmd(g, false), "inspect [OPTIONS] IMAGE [IMAGE...]"),
		asSubcommand(newHistoryCmd(g), "history [OPTIONS] IMAGE"),
		asSubcommand(newTagCmd(g), "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]"),
		asSubcommand(newLoadCmd(g), ""),
		asSubcommand(newImportCmd(g), ""),
		asSubcommand(newPullCmd(g), ""),
		asSubcommand(newPushCmd(g), ""),
	)
	return cmd
}

// asSubcommand adapts a top-level command to live under "image": a new
// name (use, unless empty) and aliases, and no group (groups are the root's).
func asSubcommand(c *cobra.Command, use string, aliases ...string) *cobra.Command {
	if use != "" {
		c.Use = use
	}
	c.Aliases = aliases
	c.GroupID = ""
	return c
}

// completeImages completes the first max arguments (all when max < 0) with
// the names and, if ids, the short IDs of the stored images.
func completeImages(g *globals, max int, ids bool) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if max >= 0 && len(args) >= max {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		// Never create a store, nor wait long for a busy one, to complete a word.
		if _, err := os.Stat(g.root); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		s, err := layerstore.Open(g.root, &layerstore.Options{LockTimeout: time.Second})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer s.Close()
		imgs, err := s.Images()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, img := range imgs {
			for _, t := range img.RepoTags {
				if strings.HasPrefix(t, toComplete) {
					out = append(out, t)
				}
			}
			if id := truncateID(img.ID); ids && strings.HasPrefix(id, toComplete) {
				out = append(out, id)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
