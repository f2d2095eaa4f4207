package main

import (
	"fmt"
	"io"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
)

type importOptions struct {
	changes []string
	message string
	quiet   bool
}

func newImportCmd(g *globals) *cobra.Command {
	o := &importOptions{}
	cmd := &cobra.Command{
		Use:   "import TARBALL|- [NAME[:TAG]]",
		Short: "Make a one-layer image from a root filesystem tarball",
		Long: `Make a one-layer image from a plain root filesystem tarball (gzip, zstd or
uncompressed), as docker import does. "-" reads the tarball from standard input.
--change applies Dockerfile instructions to the config: CMD, ENTRYPOINT, ENV,
EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL.`,
		Example: `  strata import rootfs.tar myroot:1.0
  strata import --change 'CMD ["/bin/sh"]' --change 'ENV A=1' rootfs.tar.gz myroot
  tar -C dir -c . | strata import - myroot`,
		Args:    cobra.RangeArgs(1, 2),
		GroupID: "image",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImport(cmd, g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.changes, "change", "c", nil, "apply a Dockerfile instruction to the image config")
	f.StringVarP(&o.message, "message", "m", "", "commit message for the history entry")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress the progress output")
	return cmd
}

func runImport(cmd *cobra.Command, g *globals, o *importOptions, args []string) error {
	var names []string
	if len(args) == 2 {
		n, err := layerstore.ParseTag(args[1])
		if err != nil {
			return err
		}
		names = append(names, n)
	}
	edits, err := parseChanges(o.changes)
	if err != nil {
		return err
	}
	src := args[0]
	open := func() (io.ReadCloser, error) {
		if src == "-" {
			return io.NopCloser(cmd.InOrStdin()), nil
		}
		return os.Open(src)
	}
	if src != "-" {
		if _, err := os.Stat(src); err != nil {
			return err
		}
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	bar := newProgressBar(cmd.ErrOrStderr(), o.quiet)
	img, err := s.NewImage(cmd.Context(), layerstore.NewImageOptions{
		Layers: []layerstore.NewLayer{{Open: open, History: ocispec.History{CreatedBy: "Imported from " + src, Comment: o.message}}},
		Edit: func(cfg *ocispec.Image) error {
			for _, e := range edits {
				if err := e(&cfg.Config); err != nil {
					return err
				}
			}
			return nil
		},
		Names:    names,
		Progress: bar.update,
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("import %s: %w", src, err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), img.ID)
	return nil
}
