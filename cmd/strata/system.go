package main

import "github.com/spf13/cobra"

// newSystemCmd is "strata system", the parent of the store-wide commands, as
// "docker system" is.
func newSystemCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "system",
		Short:   "Manage the store",
		Args:    cobra.NoArgs,
		GroupID: "store",
	}
	cmd.AddCommand(newDfCmd(g))
	return cmd
}
