package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/container"
)

// newSuperviseCmd is the hidden command a detached container runs under: it
// serves the container's root file system, runs it, logs its output and
// records its exit, then ends.
func newSuperviseCmd(g *globals) *cobra.Command {
	var reportFd int
	cmd := &cobra.Command{
		Use:    "container-supervise --report-fd N CONTAINER",
		Short:  "Supervise a detached container (started by run -d and start)",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			report := reporter(reportFd)
			_, c, err := g.openContainers()
			if err != nil {
				report("error: " + err.Error())
				return err
			}
			// The container ends the supervisor, not a signal to it: a
			// hang-up or terminate is passed on to the container.
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
			go func() {
				for s := range sig {
					_ = c.Kill(args[0], s.(syscall.Signal))
				}
			}()
			code, err := c.Run(context.WithoutCancel(cmd.Context()), args[0], container.Stdio{}, func(err error) {
				if err != nil {
					report(reportError(err))
				} else {
					report("started")
				}
			})
			if err != nil {
				return failed(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "container %s exited with status %d\n", args[0], code)
			return nil
		},
	}
	cmd.Flags().IntVar(&reportFd, "report-fd", 0, "file descriptor to report the start on")
	return cmd
}
