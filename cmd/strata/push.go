package main

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/transfer"
	"github.com/strata-dev/strata/transfer/registry"
)

type pushOptions struct {
	registryFlags
	all         bool
	quiet       bool
	compression string
}

func newPushCmd(g *globals) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Push an image to a registry",
		Long: `Push a stored image to the registry its name names, as docker push does: tag it first
(strata tag app localhost:5000/app:v1). Layers the registry has are skipped, layers another
repository of the same registry has are mounted from it, the rest are compressed (gzip, or
zstd with --compression zstd) and uploaded. The manifest's digest is printed and recorded in
the image's RepoDigests.`,
		Example: `  strata tag demo localhost:5000/demo:v1
  strata push localhost:5000/demo:v1
  strata push -a localhost:5000/demo`,
		Args:              cobra.ExactArgs(1),
		GroupID:           "image",
		ValidArgsFunction: completeImages(g, 1, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPush(cmd, g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all-tags", "a", false, "push all tags of the repository")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress verbose output")
	f.StringVar(&o.compression, "compression", registry.Gzip, "compression of uploaded layers: gzip or zstd")
	o.registryFlags.add(cmd)
	return cmd
}

func runPush(cmd *cobra.Command, g *globals, o *pushOptions, name string) error {
	ref, err := registry.ParseReference(name)
	if err != nil {
		return err
	}
	if ref.Digest != "" {
		return fmt.Errorf("cannot push a digest reference %q", name)
	}
	c, err := o.client(g)
	if err != nil {
		return err
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	out := cmd.OutOrStdout()
	lines := newStatusLines(out, o.quiet)
	refs := []registry.Reference{ref}
	if o.all {
		if hasTag(name) {
			return fmt.Errorf("tag can't be used with --all-tags/-a")
		}
		imgs, err := s.Images()
		if err != nil {
			return err
		}
		refs = refs[:0]
		for _, img := range imgs {
			for _, t := range img.RepoTags {
				if r, err := registry.ParseReference(t); err == nil && r.FullRepo() == ref.FullRepo() {
					refs = append(refs, r)
				}
			}
		}
		slices.SortFunc(refs, func(a, b registry.Reference) int {
			if a.Tag < b.Tag {
				return -1
			}
			if a.Tag > b.Tag {
				return 1
			}
			return 0
		})
		if len(refs) == 0 {
			return fmt.Errorf("An image does not exist locally with the tag: %s", ref.Repo())
		}
	} else if !hasTag(name) {
		lines.line("Using default tag: latest")
	}
	lines.line("The push refers to repository [%s]", ref.Repo())
	for _, r := range refs {
		res, err := transfer.Push(cmd.Context(), s, c, r, transfer.PushOptions{Compression: o.compression, Progress: lines.event})
		if err != nil {
			return err
		}
		lines.line("%s: digest: %s size: %d", r.Tag, res.Digest, res.Size)
	}
	if o.quiet {
		fmt.Fprintln(out, ref.String())
	}
	return nil
}
