package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
)

// eachContainer runs fn for every ref, prints the refs that succeeded (as
// docker does) and reports every failure, exiting 1 if any failed.
func eachContainer(cmd *cobra.Command, g *globals, refs []string, fn func(c *container.Containers, ref string) error) error {
	return eachContainerLine(cmd, g, refs, func(c *container.Containers, ref string) (string, error) {
		return ref, fn(c, ref)
	})
}

// eachContainerLine is eachContainer printing the line fn returns.
func eachContainerLine(cmd *cobra.Command, g *globals, refs []string, fn func(c *container.Containers, ref string) (string, error)) error {
	_, c, err := g.openContainers()
	if err != nil {
		return err
	}
	var errs errorList
	for _, ref := range refs {
		line, err := fn(c, ref)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), line)
	}
	if err := errs.join(); err != nil {
		return &exitError{code: 1, err: err}
	}
	return nil
}

func newStopCmd(g *globals) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Long: `Send each container its stop signal (--stop-signal, else the image's, else
SIGTERM), wait up to -t seconds (--stop-timeout, else 10) for it to exit, then
kill it. Its writable layer stays until "strata rm".`,
		Args:    cobra.MinimumNArgs(1),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			t := stopTime(cmd, &timeout)
			return eachContainer(cmd, g, args, func(c *container.Containers, ref string) error {
				_, err := c.Stop(cmd.Context(), ref, t)
				return err
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing the container")
	return cmd
}

// stopTime is -t when given, else nil: the container's own stop timeout.
func stopTime(cmd *cobra.Command, timeout *int) *int {
	if cmd.Flags().Changed("time") {
		return timeout
	}
	return nil
}

func newRestartCmd(g *globals) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:     "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short:   "Restart one or more containers",
		Long:    `Stop each container as "strata stop" does, then start it in the background.`,
		Args:    cobra.MinimumNArgs(1),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			t := stopTime(cmd, &timeout)
			return eachContainer(cmd, g, args, func(c *container.Containers, ref string) error {
				rec, err := c.Stop(cmd.Context(), ref, t)
				if err != nil {
					return err
				}
				return startDetachedContainer(g, c, rec.ID)
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing the container")
	return cmd
}

func newKillCmd(g *globals) *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:     "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short:   "Kill one or more running containers",
		Long:    `Send each running container a signal: SIGKILL unless -s names another (SIGHUP, HUP or 1).`,
		Args:    cobra.MinimumNArgs(1),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, err := container.ParseSignal(signal)
			if err != nil {
				return err
			}
			return eachContainer(cmd, g, args, func(c *container.Containers, ref string) error {
				return c.Kill(ref, sig)
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "signal to send")
	return cmd
}

func newContainerRmCmd(g *globals) *cobra.Command {
	var force, volumes bool
	cmd := &cobra.Command{
		Use:   "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Remove one or more containers",
		Long: `Remove containers and their writable layers, and with -v their anonymous
volumes. A running container is refused unless -f, which kills it first.`,
		Args:    cobra.MinimumNArgs(1),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainer(cmd, g, args, func(c *container.Containers, ref string) error {
				return c.Remove(cmd.Context(), ref, force, volumes)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill and remove a running container")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "remove the anonymous volumes of the container")
	return cmd
}

func newWaitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "wait CONTAINER [CONTAINER...]",
		Short:   "Block until one or more containers stop, then print their exit codes",
		Args:    cobra.MinimumNArgs(1),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainerLine(cmd, g, args, func(c *container.Containers, ref string) (string, error) {
				rec, err := c.Wait(cmd.Context(), ref)
				if err != nil {
					return "", err
				}
				return fmt.Sprint(rec.State.ExitCode), nil
			})
		},
	}
}
