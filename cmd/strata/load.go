package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/layerstore/imagefmt"
	"github.com/strata-dev/strata/transfer"
	"golang.org/x/term"
)

type loadOptions struct {
	input string
	tags  []string
	quiet bool
}

func newLoadCmd(g *globals) *cobra.Command {
	o := &loadOptions{}
	cmd := &cobra.Command{
		Use:   "load [-i PATH]",
		Short: "Load images from a docker-archive, an oci-archive or an OCI layout",
		Long: `Load images from a docker-archive (docker save), an oci-archive, or an OCI image layout
directory, detected by content. Reads standard input when -i is not given.
Every image in the archive is loaded with all its tags, unless --tag picks some.`,
		Example: `  strata load -i demo.docker.tar
  strata load -i ./oci-layout --tag demo:latest
  docker save busybox | strata load`,
		Args:    cobra.NoArgs,
		GroupID: "image",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLoad(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.input, "input", "i", "", "read from an archive file or layout directory instead of standard input")
	f.StringSliceVarP(&o.tags, "tag", "t", nil, "load only the images with these names (name:tag)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress the progress output")
	return cmd
}

func runLoad(cmd *cobra.Command, g *globals, o *loadOptions) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	var a *imagefmt.Archive
	if o.input == "" || o.input == "-" {
		if f, ok := cmd.InOrStdin().(*os.File); ok && isTerminal(f) {
			return fmt.Errorf("requested load from stdin, but stdin is empty (use -i PATH)")
		}
		a, err = imagefmt.OpenReader(cmd.InOrStdin(), s.TmpDir())
	} else {
		a, err = imagefmt.Open(o.input)
	}
	if errors.Is(err, layerstore.ErrUnknownFormat) {
		src := o.input
		if src == "" {
			src = "-"
		}
		return fmt.Errorf("%w\n(a root filesystem tarball is not an image: \"strata import %s NAME[:TAG]\" makes one of it)", err, src)
	}
	if err != nil {
		return err
	}
	defer a.Close()
	out := cmd.OutOrStdout()
	// Progress on stderr, so that stdout holds only the "Loaded image" lines.
	var pr *progress
	_, err = transfer.Load(cmd.Context(), s, a.Images(), transfer.LoadOptions{
		Names: o.tags,
		From:  o.input,
		Progress: func(src *layerstore.ImageSource) func(layerstore.Progress) {
			pr = newProgress(cmd.ErrOrStderr(), o.quiet, "Loading", "Writing to the store", len(src.Layers))
			return pr.update
		},
		Loaded: func(stored layerstore.Image, names []string) {
			what := "Loaded " + truncateID(stored.ID)
			if len(names) > 0 {
				what = "Loaded " + strings.Join(names, ", ")
			}
			pr.done(what, nil)
			pr = nil
			if len(names) == 0 {
				fmt.Fprintf(out, "Loaded image ID: %s\n", stored.ID)
			}
			names = slices.Clone(names)
			slices.Sort(names)
			for _, n := range names {
				fmt.Fprintf(out, "Loaded image: %s\n", n)
			}
		},
	})
	pr.done("", err)
	return err
}

// isTerminal says whether f is a tty; /dev/null is a character device but
// not a terminal.
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}
