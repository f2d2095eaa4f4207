package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

type snapshotterOptions struct {
	address string
}

// snapshotterBinary is the snapshotter's own executable: gRPC and protobuf
// stay out of this one, whose every command paid for their package init.
const snapshotterBinary = "strata-snapshotter"

func newSnapshotterCmd(g *globals) *cobra.Command {
	o := &snapshotterOptions{}
	cmd := &cobra.Command{
		Use:   "snapshotter [--address SOCKET]",
		Short: "Serve the store to containerd as a snapshotter",
		Long: `Serve containerd's snapshots API on a unix socket, so that containerd keeps
image layers in the store and runs containers on strata mounts. The server is
strata-snapshotter (installed beside strata, or found in PATH): this command
runs it in strata's place, with these flags. "strata-snapshotter --help" shows
what to add to containerd's config.toml.`,
		Example: `  strata snapshotter --address /run/strata/snapshotter.sock --root /var/lib/strata`,
		Args:    cobra.NoArgs,
		GroupID: "store",
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := findSnapshotter()
			if err != nil {
				return err
			}
			args := []string{bin, "--address", o.address, "--root", g.root, "--lock-timeout", fmt.Sprint(g.lockTimeout)}
			if g.debug {
				args = append(args, "--debug")
			}
			// exec, not a child: containerd's service manager and a
			// SIGTERM reach the server itself.
			return syscall.Exec(bin, args, os.Environ())
		},
	}
	cmd.Flags().StringVar(&o.address, "address", "/run/strata/snapshotter.sock", "unix socket to serve on")
	return cmd
}

// findSnapshotter finds strata-snapshotter beside this executable, else in
// PATH.
func findSnapshotter() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), snapshotterBinary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(snapshotterBinary)
	if err != nil {
		return "", errors.Join(fmt.Errorf("%s is not installed beside strata nor in PATH (go install ./cmd/... installs both)", snapshotterBinary), err)
	}
	return p, nil
}
