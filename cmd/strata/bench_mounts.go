package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/strata-dev/strata/bench"
)

// benchMountsOptions is strata bench's --mounts dimension.
type benchMountsOptions struct {
	counts   []int
	image    string
	parallel int
}

func (o *benchMountsOptions) flags(f *pflag.FlagSet) {
	f.IntSliceVar(&o.counts, "mounts", nil, "measure N read-write mounts of one image at once beside fuse-overlayfs (memory per mount and in all, time to mount and unmount them), for each N given, e.g. 1,10,100; nothing else runs")
	f.IntVar(&o.parallel, "mounts-parallel", 1, "with --mounts: how many mounts (and unmounts) to make at once")
	f.StringVar(&o.image, "mounts-image", "", "the image for --mounts: an OCI layout, oci-archive or docker-archive (default $STRATA_DEBIAN/oci, the Debian fixture)")
}

func runBenchMounts(cmd *cobra.Command, o *benchOptions) error {
	img := o.mnt.image
	if img == "" {
		if d := os.Getenv("STRATA_DEBIAN"); d != "" {
			img = filepath.Join(d, "oci")
		} else {
			return errors.New("--mounts needs an image: --mounts-image PATH (or $STRATA_DEBIAN, made by internal/fixtures/make-debian.sh)")
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rp, err := bench.RunMounts(ctx, bench.MountsConfig{
		Dir:      o.dir,
		Image:    img,
		Counts:   o.mnt.counts,
		Parallel: o.mnt.parallel,
		Strata:   self,
		Log:      cmd.ErrOrStderr(),
	})
	if rp != nil {
		if werr := rp.WriteTable(cmd.OutOrStdout()); werr != nil {
			err = errors.Join(err, werr)
		}
		p := filepath.Join(o.out, "mounts.json")
		if werr := writeFileWith(p, func(w io.Writer) error {
			e := json.NewEncoder(w)
			e.SetIndent("", "  ")
			return e.Encode(rp)
		}); werr != nil {
			err = errors.Join(err, werr)
		} else {
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", p)
		}
	}
	return err
}
