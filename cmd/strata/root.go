package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/internal/mountserver"
	"github.com/strata-dev/strata/layerstore"
)

// globals are the flags every command shares.
type globals struct {
	root        string
	debug       bool
	lockTimeout int // seconds
}

// openStore opens the store the flags name.
func (g *globals) openStore() (*layerstore.Store, error) {
	return mountserver.OpenStore(g.root, secs(g.lockTimeout), g.logger(), g.imageUsers)
}

// imageUsers lists the containers as users of their images
// (layerstore.Options.Users): a container holds its image from its record
// on (rmi, prune).
func (g *globals) imageUsers() ([]layerstore.ImageUser, error) {
	return container.ImageUsers(container.RecordsDir(g.root))
}

func (g *globals) logger() *slog.Logger { return mountserver.Logger(g.debug) }

func newRootCmd() *cobra.Command {
	g := &globals{}
	cmd := &cobra.Command{
		Use:           "strata",
		Short:         "Layer store and union filesystem for container images",
		Long:          "strata keeps container image layers in a content-addressed store and mounts images as directories through FUSE,\nwith an ephemeral copy-on-write top layer.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.PersistentFlags().StringVar(&g.root, "root", layerstore.DefaultRoot(), "store directory ($STRATA_ROOT; else /var/lib/strata as root, ~/.local/share/strata as a user)")
	cmd.PersistentFlags().BoolVarP(&g.debug, "debug", "D", false, "log debug messages to stderr")
	cmd.PersistentFlags().IntVar(&g.lockTimeout, "lock-timeout", 30, "seconds to wait for another strata process to release the store")
	cmd.AddGroup(&cobra.Group{ID: "image", Title: "Image commands:"}, &cobra.Group{ID: "mount", Title: "Mount commands:"}, &cobra.Group{ID: "container", Title: "Container commands:"}, &cobra.Group{ID: "store", Title: "Store commands:"})
	for _, c := range subcommands(g) {
		cmd.AddCommand(c)
	}
	// -v/--version prints what "strata version" does, as docker's does.
	var version bool
	cmd.Flags().BoolVarP(&version, "version", "v", false, "print version information and quit")
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if version {
			_, err := fmt.Fprint(cmd.OutOrStdout(), versionText(g.root))
			return err
		}
		return cmd.Help()
	}
	return cmd
}

// execute runs the root command with args as main does: an error is printed
// after "Error: " (a bare exit status is not), and the exit status returned.
func execute(args []string) int {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err == nil {
		return 0
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(os.Stderr, "Error:", msg)
	}
	return exitCode(err)
}

// exitCode maps an error to the process exit status.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// exitError ends the process with a given status after printing err.
type exitError struct {
	code int
	err  error
}

// Error is "" for a bare exit status (a container's), which main does not print.
func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }
