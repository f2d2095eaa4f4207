package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
)

type checkOptions struct {
	contents bool
}

func newCheckCmd(g *globals) *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check [--contents]",
		Short: "Verify the store's consistency",
		Long: `Verify every cross-reference of the store's metadata (images, tags, layers,
trees, object reference counts, mount leases) and that every object file exists
with its recorded size; --contents also hashes every object.

Each problem is printed on a "problem:" line; what an interrupted command or a
crash leaves behind (unreferenced objects, layers and trees no image or mount
holds, staging files, stale mounts, a volume's interrupted fill) on "garbage:" lines, which strata gc removes. The exit status is 1 if there is a
problem; garbage alone is not one.`,
		Example: `  strata check                      # metadata only: quick, safe beside live mounts
  strata check --contents           # also re-hash every stored file (reads the whole store)
  strata check || strata gc         # exit status 1 means problems; garbage alone is not one
  strata --root /srv/strata check`,
		Args:    cobra.NoArgs,
		GroupID: "store",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd, g, o)
		},
	}
	cmd.Flags().BoolVar(&o.contents, "contents", false, "also hash every object file and compare it to its digest")
	return cmd
}

func runCheck(cmd *cobra.Command, g *globals, o *checkOptions) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := s.Check(o.contents)
	if err != nil {
		return err
	}
	// The containers' volumes are the store's too.
	fills, err := container.InterruptedFills(s.Root())
	if err != nil {
		return err
	}
	for _, v := range fills {
		rep.Garbage = append(rep.Garbage, fmt.Sprintf("volume %s: its fill from an image was interrupted (gc, or the next container that mounts it, fills it again)", v))
	}
	out := cmd.OutOrStdout()
	for _, p := range rep.Problems {
		fmt.Fprintln(out, "problem:", p)
	}
	for _, n := range rep.Garbage {
		fmt.Fprintln(out, "garbage:", n)
	}
	for _, n := range rep.Downloads {
		fmt.Fprintln(out, "unfinished download:", n, "(the next pull resumes it; gc removes it)")
	}
	what := "metadata and object sizes"
	if o.contents {
		what = "metadata and object contents"
	}
	fmt.Fprintf(out, "checked %s of %s, %s, %s, %s, %s: %s, %s\n", what,
		plural(rep.Images, "image"), plural(rep.Layers, "layer"), plural(rep.Trees, "tree"),
		plural(rep.Objects, "object"), plural(rep.Mounts, "mount"),
		plural(len(rep.Problems), "problem"), plural(len(rep.Garbage), "piece")+" of garbage")
	if !rep.OK() {
		return &exitError{code: 1, err: fmt.Errorf("store %s has %s", s.Root(), plural(len(rep.Problems), "problem"))}
	}
	return nil
}

// plural is "1 image", "2 images".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
