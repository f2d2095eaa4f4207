package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/session"
)

type gcOptions struct{}

func newGCCmd(g *globals) *cobra.Command {
	o := &gcOptions{}
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove what nothing holds: stale mounts, unused layers, unreferenced objects",
		Long: `Collect the store's garbage:

  - mounts whose server process is gone: their FUSE mountpoint is detached
    (lazily, as umount -l does), then their lease and copy-on-write layer go;
  - layers and merged trees no image or mount holds;
  - object files no layer names, and staging leftovers of interrupted imports;
  - the files of a volume whose fill from an image was interrupted (emptied,
    so the next container that mounts it fills it again).

Waits for running imports to finish (they hold the store lock), so it never
removes what one is about to commit. If a stale mountpoint cannot be detached,
nothing is collected: unmount it by hand (umount -l DIR, or fusermount -u -z DIR)
and run gc again.`,
		Example: `  strata gc                         # after "strata check" reported garbage
  strata image prune -a -f && strata gc
  strata --root /srv/strata gc`,
		Args:    cobra.NoArgs,
		GroupID: "store",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGC(cmd, g, o)
		},
	}
	return cmd
}

func runGC(cmd *cobra.Command, g *globals, _ *gcOptions) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	out := cmd.OutOrStdout()
	mounts, err := s.Mounts()
	if err != nil {
		return err
	}
	var errs errorList
	for _, m := range mounts {
		if m.Running() || m.Dir == "" {
			continue
		}
		n, err := session.DetachFUSE(m.Dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("stale mount %s: %w", m.ID, err))
			continue
		}
		if n > 0 {
			fmt.Fprintln(out, "Detached stale mount:", m.Dir)
		}
	}
	if len(errs) > 0 {
		return errs.join()
	}
	fills, err := container.ResetInterruptedFills(s.Root())
	for _, v := range fills {
		fmt.Fprintln(out, "Emptied half-filled volume:", v)
	}
	if err != nil {
		return err
	}
	rep, err := s.GC()
	if rep != nil {
		for _, id := range rep.Mounts {
			fmt.Fprintln(out, "Dropped stale mount:", id)
		}
		for _, l := range rep.Layers {
			fmt.Fprintln(out, "Deleted layer:", l)
		}
		if rep.Objects > 0 {
			fmt.Fprintf(out, "Removed %s\n", plural(rep.Objects, "object file"))
		}
		if rep.Trees > 0 {
			fmt.Fprintf(out, "Removed %s\n", plural(rep.Trees, "tree file"))
		}
		if rep.Staging > 0 {
			fmt.Fprintf(out, "Removed %s\n", plural(rep.Staging, "staging leftover"))
		}
		if rep.Downloads > 0 {
			fmt.Fprintf(out, "Removed %s\n", plural(rep.Downloads, "unfinished download"))
		}
		fmt.Fprintln(out, "Total reclaimed space:", humanSize(rep.Reclaimed, 4))
	}
	return err
}
