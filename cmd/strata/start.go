package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
)

func newStartCmd(g *globals) *cobra.Command {
	var attach, interactive bool
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Long: `Start created or exited containers, with the writable layer they had. Each
runs in the background under a supervisor, and its name is printed; with -a
one container runs attached, its output here and its exit status strata's.`,
		Args:    cobra.MinimumNArgs(1),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := g.openContainers()
			if err != nil {
				return failed(err)
			}
			if attach || interactive {
				if len(args) > 1 {
					return failed(fmt.Errorf("you cannot start and attach multiple containers at once"))
				}
				code, err := runAttached(cmd, c, args[0], interactive)
				if err != nil {
					return failed(err)
				}
				return exitStatus(code)
			}
			return eachContainer(cmd, g, args, func(c *container.Containers, ref string) error {
				rec, err := c.Records().Get(ref)
				if err != nil {
					return err
				}
				if rec.State.Status == container.Running {
					return nil // docker's start of a running container: its name, nothing more
				}
				return startDetachedContainer(g, c, rec.ID)
			})
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach the container's output and exit with its status")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach the container's standard input")
	return cmd
}
