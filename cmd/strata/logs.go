package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
)

func newLogsCmd(g *globals) *cobra.Command {
	var (
		follow, timestamps bool
		tail               string
	)
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Long: `Print a container's output, stdout here and stderr to stderr, as docker logs
does. The log is kept in docker's json-file format until the container is
removed.`,
		Example: `  strata logs -f web
  strata logs --tail 10 -t web`,
		Args:    cobra.ExactArgs(1),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			n := -1
			if tail != "all" {
				v, err := strconv.Atoi(tail)
				if err != nil {
					return fmt.Errorf("invalid value for tail: %q: want a number or \"all\"", tail)
				}
				n = v
			}
			_, c, err := g.openContainers()
			if err != nil {
				return err
			}
			rec, err := c.Records().Get(args[0])
			if err != nil {
				return err
			}
			done := func() bool {
				r, err := c.Records().Get(rec.ID)
				return err != nil || r.State.Status != container.Running
			}
			err = container.ReadLog(cmd.Context(), c.LogPath(rec.ID), container.LogOptions{Tail: n, Follow: follow, Done: done},
				func(e container.LogEntry) error {
					var w io.Writer = cmd.OutOrStdout()
					if e.Stream == "stderr" {
						w = cmd.ErrOrStderr()
					}
					if timestamps {
						_, err := fmt.Fprintf(w, "%s %s", e.Time.Format(time.RFC3339Nano), e.Log)
						return err
					}
					_, err := io.WriteString(w, e.Log)
					return err
				})
			if isNotExist(err) {
				return nil // never started: nothing logged
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "follow log output")
	f.BoolVarP(&timestamps, "timestamps", "t", false, "show timestamps")
	f.StringVarP(&tail, "tail", "n", "all", "number of lines to show from the end of the logs")
	return cmd
}
