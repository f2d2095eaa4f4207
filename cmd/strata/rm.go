package main

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
)

type rmiOptions struct {
	force bool
}

func newRmiCmd(g *globals) *cobra.Command {
	o := &rmiOptions{}
	cmd := &cobra.Command{
		Use:   "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Long: `Remove images by name[:tag], name@digest, ID or unique ID prefix, as docker rmi does.

A name or a name@digest of an image that other tags or digests name only
removes that reference ("Untagged: name:tag"); untagging a repository's last
tag drops its name@digest references too.
Otherwise the image goes ("Deleted: sha256:<image ID>"), and with it every
layer no other image or mount holds ("Deleted: sha256:<chain ID>", docker's
name for a layer in an image) and the file
contents nothing else shares.

Without -f, an ID of an image tagged in several repositories, and an image a
live mount uses, are refused. With -f, a mounted image goes at once but what
its mount shows stays until the mount ends, and goes then. With -f, names that
match nothing are reported
but do not fail the command. An IMAGE that fails does not stop the others;
the exit status is 1 if any failed.`,
		Example: `  strata rmi demo:latest
  strata image rm -f 2b96eb5eb241`,
		Args:              cobra.MinimumNArgs(1),
		GroupID:           "image",
		ValidArgsFunction: completeImages(g, -1, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRmi(cmd, g, o, args)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "force removal of the image")
	return cmd
}

func runRmi(cmd *cobra.Command, g *globals, o *rmiOptions, refs []string) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	out := cmd.OutOrStdout()
	var (
		errs  errorList
		fatal bool
	)
	for _, ref := range refs {
		// Only to print the deleted layers top first, as docker does.
		img, _ := s.ResolveImage(ref)
		rep, err := s.RemoveImage(ref, o.force)
		if err != nil {
			if !errors.Is(err, layerstore.ErrNotFound) {
				fatal = true
			}
			errs = append(errs, err)
			continue
		}
		for _, t := range rep.Untagged {
			fmt.Fprintln(out, "Untagged:", t)
		}
		for _, d := range deletedTopFirst(rep.Deleted, img.Layers) {
			fmt.Fprintln(out, "Deleted:", d)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	// docker rmi -f fails only for errors other than "No such image".
	if !o.force || fatal {
		return errs.join()
	}
	printErrors(cmd.ErrOrStderr(), errs)
	return nil
}

// deletedTopFirst orders what a removal deleted as docker prints it: first
// what is not a layer of the image (its ID), then its layers from the top
// down, each named by its chain ID in the image, as docker names layers.
// Layers is the image's diffIDs, base first.
func deletedTopFirst(deleted, layers []digest.Digest) []digest.Digest {
	rank := map[digest.Digest]int{}
	chain := map[digest.Digest]digest.Digest{}
	for i, l := range layers {
		if _, ok := chain[l]; !ok {
			rank[l] = len(layers) - i // the top layer ranks 1
			chain[l] = identity.ChainID(layers[:i+1])
		}
	}
	out := slices.Clone(deleted)
	slices.SortStableFunc(out, func(a, b digest.Digest) int { return rank[a] - rank[b] })
	for i, d := range out {
		if c, ok := chain[d]; ok {
			out[i] = c
		}
	}
	return out
}

// printErrors prints each error on its own "Error: " line.
func printErrors(w io.Writer, errs []error) {
	for _, e := range errs {
		fmt.Fprintln(w, "Error:", e)
	}
}
