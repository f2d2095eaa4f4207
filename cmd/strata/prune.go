package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
)

type pruneOptions struct {
	all   bool
	force bool
}

// docker's prompts.
const (
	pruneDanglingWarning = "WARNING! This will remove all dangling images.\nAre you sure you want to continue?"
	pruneAllWarning      = "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue?"
)

func newPruneCmd(g *globals) *cobra.Command {
	o := &pruneOptions{}
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Long: `Remove dangling images (those without a tag), or with -a every image no live
mount uses, together with the layers and file contents nothing else holds.
Asks first unless -f is given, and refuses to ask when standard input is not
a terminal. The space reclaimed is docker's figure, the content of the deleted
layers, followed by what was freed on disk, which is less where the deleted
layers shared files with what stays (each content is stored once).`,
		Example: `  strata image prune -f
  strata image prune -a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPrune(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "remove all unused images, not just dangling ones")
	f.BoolVarP(&o.force, "force", "f", false, "do not prompt for confirmation")
	return cmd
}

func runPrune(cmd *cobra.Command, g *globals, o *pruneOptions) error {
	out := cmd.OutOrStdout()
	if !o.force {
		// A prompt nobody can answer (cron, CI, a pipe) would print a
		// question without a newline and remove nothing: say so instead.
		if f, ok := cmd.InOrStdin().(*os.File); !ok || !isTerminal(f) {
			return fmt.Errorf("image prune asks before removing anything, and standard input is not a terminal: add -f (--force) to prune without asking")
		}
		warning := pruneDanglingWarning
		if o.all {
			warning = pruneAllWarning
		}
		if !confirm(cmd.InOrStdin(), out, warning) {
			return nil
		}
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	// The images as they were, to print each one's tags and layers with it.
	before, err := s.Images()
	if err != nil {
		return err
	}
	rep, err := s.Prune(o.all)
	if err != nil {
		return err
	}
	if len(rep.Untagged)+len(rep.Deleted) > 0 {
		fmt.Fprintln(out, "Deleted Images:")
		for _, l := range pruneLines(rep, before) {
			fmt.Fprintln(out, l)
		}
		fmt.Fprintln(out)
	}
	// docker's figure is the content of the deleted layers; strata frees
	// less on disk where they shared files with what stays.
	content := deletedContent(rep, before)
	fmt.Fprintf(out, "Total reclaimed space: %s", humanSize(content, 4))
	if rep.Reclaimed != content {
		fmt.Fprintf(out, " (%s on disk, where each file content is stored once)", humanSize(rep.Reclaimed, 4))
	}
	fmt.Fprintln(out)
	return nil
}

// pruneLines groups a prune report by image as docker prints it: the
// image's tags ("untagged: "), its ID and its deleted layers from the top
// down ("deleted: "). Images come in the order of before (images' order,
// newest first).
func pruneLines(rep *layerstore.RemoveReport, before []layerstore.Image) []string {
	byID := map[digest.Digest]layerstore.Image{}
	rank := map[digest.Digest]int{}
	owner := map[string]digest.Digest{}
	for i, img := range before {
		byID[img.ID] = img
		rank[img.ID] = i
		for _, t := range img.RepoTags {
			owner[t] = img.ID
		}
	}
	n := min(rep.DeletedImages, len(rep.Deleted))
	ids, layers := slices.Clone(rep.Deleted[:n]), rep.Deleted[n:]
	slices.SortStableFunc(ids, func(a, b digest.Digest) int { return rank[a] - rank[b] })
	layerLeft := map[digest.Digest]bool{}
	for _, l := range layers {
		layerLeft[l] = true
	}
	tagLeft := map[string]bool{}
	for _, t := range rep.Untagged {
		tagLeft[t] = true
	}
	var lines []string
	for _, id := range ids {
		for _, t := range rep.Untagged {
			if tagLeft[t] && owner[t] == id {
				lines = append(lines, "untagged: "+t)
				delete(tagLeft, t)
			}
		}
		lines = append(lines, "deleted: "+id.String())
		img := byID[id]
		var mine []digest.Digest
		for _, l := range img.Layers {
			if layerLeft[l] {
				mine = append(mine, l)
				delete(layerLeft, l)
			}
		}
		for _, c := range deletedTopFirst(mine, img.Layers) {
			lines = append(lines, "deleted: "+c.String())
		}
	}
	// What no image accounted for (a tag or layer gone meanwhile).
	var rest []string
	for _, t := range rep.Untagged {
		if tagLeft[t] {
			rest = append(rest, "untagged: "+t)
		}
	}
	for _, l := range layers {
		if layerLeft[l] {
			rest = append(rest, "deleted: "+l.String())
		}
	}
	return append(lines, rest...)
}

// confirm asks docker's question and reads the answer: only y or Y says yes.
func confirm(in io.Reader, out io.Writer, question string) bool {
	fmt.Fprint(out, question+" [y/N] ")
	line, _ := bufio.NewReader(in).ReadString('\n')
	return strings.EqualFold(strings.TrimSpace(line), "y")
}

// deletedContent is docker's reclaimed space: the content bytes of every
// layer the removal deleted, each once.
func deletedContent(rep *layerstore.RemoveReport, before []layerstore.Image) int64 {
	size := map[digest.Digest]int64{}
	for _, img := range before {
		for i, l := range img.Layers {
			size[l] = img.LayerSizes[i]
		}
	}
	var n int64
	for _, d := range rep.Deleted {
		n += size[d] // 0 for an image ID
		delete(size, d)
	}
	return n
}
