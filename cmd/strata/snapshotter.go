package main

import (
	"context"
	"errors"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/snapshotter"
)

type snapshotterOptions struct {
	address string
}

func newSnapshotterCmd(g *globals) *cobra.Command {
	o := &snapshotterOptions{}
	cmd := &cobra.Command{
		Use:   "snapshotter [--address SOCKET]",
		Short: "Serve the store to containerd as a snapshotter",
		Long: `Serve containerd's snapshots API on a unix socket (mode 0600), so that
containerd keeps image layers in the store and runs containers on strata
mounts. Add to containerd's config.toml:

  [proxy_plugins.strata]
    type = "snapshot"
    address = "/run/strata/snapshotter.sock"

and use it with "ctr run --snapshotter strata IMAGE ID CMD" (or
"ctr images pull/import --snapshotter strata"). Committed snapshots are
images tagged containerd-snapshot:HASH; active snapshots are mounts with a
kept top layer. SIGINT or SIGTERM stops cleanly: committed snapshots stay,
active ones come back when the snapshotter starts again.`,
		Example: `  strata snapshotter --address /run/strata/snapshotter.sock --root /var/lib/strata`,
		Args:    cobra.NoArgs,
		GroupID: "store",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.openStore()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			sn, err := snapshotter.Open(ctx, st, snapshotter.Options{Logger: g.logger()})
			if err != nil {
				return err
			}
			l, err := snapshotter.Listen(o.address)
			if err != nil {
				return errors.Join(err, sn.Close())
			}
			return snapshotter.Serve(ctx, sn, l)
		},
	}
	cmd.Flags().StringVar(&o.address, "address", "/run/strata/snapshotter.sock", "unix socket to serve on")
	return cmd
}
