package main

import (
	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
)

type tagOptions struct{}

func newTagCmd(g *globals) *cobra.Command {
	o := &tagOptions{}
	cmd := &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Long: `Point the name TARGET_IMAGE at the image SOURCE_IMAGE names (name[:tag], ID or
unique ID prefix). TARGET_IMAGE is normalized as docker does ("docker.io/library/demo"
is "demo:latest"); a tag it had is moved, and an image left without tags becomes
dangling.`,
		Example:           `  strata tag demo registry.example.com/demo:v1`,
		Args:              cobra.ExactArgs(2),
		GroupID:           "image",
		ValidArgsFunction: completeImages(g, 1, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTag(cmd, g, o, args[0], args[1])
		},
	}
	return cmd
}

func runTag(_ *cobra.Command, g *globals, _ *tagOptions, src, target string) error {
	// Checked before the store is opened (and created); Tag checks again.
	if _, err := layerstore.ParseTag(target); err != nil {
		return err
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Tag(src, target)
}
