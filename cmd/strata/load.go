package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/layerstore/imagefmt"
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
	if err != nil {
		return err
	}
	defer a.Close()
	want := map[string]bool{}
	for _, t := range o.tags {
		n, err := layerstore.ParseTag(t)
		if err != nil {
			return err
		}
		want[n] = true
	}
	images := a.Images()
	var picked []imagefmt.Image
	var all []string
	for _, img := range images {
		all = append(all, img.Names...)
		if len(want) == 0 {
			picked = append(picked, img)
			continue
		}
		var names []string
		for _, n := range img.Names {
			if want[n] {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			img.Names = names
			picked = append(picked, img)
		}
	}
	if len(picked) == 0 {
		if len(want) > 0 {
			return fmt.Errorf("%s has no image named %s (it has: %s)", o.input, strings.Join(o.tags, ", "), strings.Join(all, ", "))
		}
		return fmt.Errorf("%s holds no image", o.input)
	}
	out := cmd.OutOrStdout()
	for _, img := range picked {
		bar := newProgressBar(out, o.quiet)
		src := &layerstore.ImageSource{
			Names:          img.Names,
			ConfigRaw:      img.ConfigRaw,
			ConfigDigest:   img.ConfigDigest,
			ManifestRaw:    img.ManifestRaw,
			ManifestDigest: img.ManifestDigest,
		}
		for _, l := range img.Layers {
			src.Layers = append(src.Layers, layerstore.LayerBlob{Digest: l.Digest, Size: l.Size, DiffID: l.DiffID, Open: l.Open})
		}
		stored, err := s.AddImage(cmd.Context(), src, &layerstore.AddOptions{Progress: bar.update})
		bar.finish()
		if err != nil {
			return fmt.Errorf("load %s: %w", imageLabel(img), err)
		}
		if len(img.Names) == 0 {
			fmt.Fprintf(out, "Loaded image ID: %s\n", stored.ID)
		}
		names := slices.Clone(img.Names)
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(out, "Loaded image: %s\n", n)
		}
	}
	return nil
}

func imageLabel(img imagefmt.Image) string {
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return string(img.ConfigDigest)
}

// isTerminal says whether f is a tty; /dev/null is a character device but
// not a terminal.
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}
