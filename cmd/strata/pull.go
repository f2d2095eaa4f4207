package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/transfer"
	"github.com/strata-dev/strata/transfer/registry"
)

type pullOptions struct {
	registryFlags
	platform string
	all      bool
	quiet    bool
}

func newPullCmd(g *globals) *cobra.Command {
	o := &pullOptions{}
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Pull an image from a registry",
		Long: `Pull an image from a registry into the store, as docker pull does: names as docker
normalises them (busybox is docker.io/library/busybox:latest), layers the store already has
are not downloaded, the others stream into the store verified against their digests, a
few at once, resuming an interrupted download. Credentials come from docker's config.json
(strata login, docker login).`,
		Example: `  strata pull localhost:5000/app:v1
  strata pull --platform linux/arm64 localhost:5000/app
  strata pull localhost:5000/app@sha256:…
  strata pull -a localhost:5000/app`,
		Args:    cobra.ExactArgs(1),
		GroupID: "image",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPull(cmd, g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.platform, "platform", "", "pull the image for this platform (os/arch[/variant]) from a multi-platform image")
	f.BoolVarP(&o.all, "all-tags", "a", false, "download all tagged images in the repository")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress verbose output")
	o.registryFlags.add(cmd)
	return cmd
}

func runPull(cmd *cobra.Command, g *globals, o *pullOptions, name string) error {
	ref, err := registry.ParseReference(name)
	if err != nil {
		return err
	}
	platform, err := registry.ParsePlatform(o.platform)
	if err != nil {
		return err
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
		if ref.Digest != "" || strings.Contains(name, ":") && ref.Tag != "latest" {
			return fmt.Errorf("tag can't be used with --all-tags/-a")
		}
		tags, err := c.Tags(cmd.Context(), ref)
		if err != nil {
			return err
		}
		refs = refs[:0]
		for _, t := range tags {
			refs = append(refs, ref.WithTag(t))
		}
		lines.line("Pulling repository %s", ref.FullRepo())
	} else if ref.Digest == "" && !hasTag(name) {
		lines.line("Using default tag: latest")
	}
	for _, r := range refs {
		what := r.Tag
		if r.Digest != "" {
			what = string(r.Digest)
		}
		lines.line("%s: Pulling from %s", what, strings.TrimPrefix(r.FullRepo(), r.Domain()+"/"))
		res, err := transfer.Pull(cmd.Context(), s, c, r, transfer.PullOptions{Platform: platform, Progress: lines.event})
		if err != nil {
			return err
		}
		lines.line("Digest: %s", res.Digest)
		shown := r.Familiar()
		if res.UpToDate {
			lines.line("Status: Image is up to date for %s", shown)
		} else {
			lines.line("Status: Downloaded newer image for %s", shown)
		}
	}
	if !o.all {
		fmt.Fprintln(out, ref.String())
	}
	return nil
}

// hasTag says whether a name as typed names a tag: a ':' after the last '/'.
func hasTag(name string) bool {
	i := strings.LastIndex(name, "/")
	return strings.Contains(name[i+1:], ":")
}
