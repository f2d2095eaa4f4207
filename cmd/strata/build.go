package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/build"
	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/layerstore"
)

type buildOptions struct {
	tags      []string
	file      string
	buildArgs []string
	target    string
	noCache   bool
	pull      bool
	network   string
	labels    []string
	quiet     bool
	iidfile   string
	progress  string
}

func newBuildCmd(g *globals) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] CONTEXT|-",
		Short: "Build an image from a Dockerfile",
		Long: `Build an image from the Dockerfile in CONTEXT (a directory; its .dockerignore
is honoured with docker's rules), or from stdin ("-": a Dockerfile alone, or a
tar of the context). Every Dockerfile instruction has docker's meaning; RUN
steps run in containers under runc on a mount of the image so far. Steps are
cached in the store: an unchanged step is taken from the cache (CACHED).
Progress is BuildKit's plain output; the new image's ID comes last.`,
		Example: `  strata build -t app:1 .
  strata build -f build/Dockerfile --build-arg VERSION=2 --target prod -t app:2 .
  strata build -q - < Dockerfile`,
		Args:    cobra.ExactArgs(1),
		GroupID: "image",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.tags, "tag", "t", nil, `name and optionally a tag in the "name:tag" format`)
	f.StringVarP(&o.file, "file", "f", "", `name of the Dockerfile (default "CONTEXT/Dockerfile"; "-" reads it from stdin)`)
	f.StringArrayVar(&o.buildArgs, "build-arg", nil, "set build-time variables (KEY=VALUE, or KEY to take it from the environment)")
	f.StringVar(&o.target, "target", "", "set the target build stage to build")
	f.BoolVar(&o.noCache, "no-cache", false, "do not use cache when building the image")
	f.BoolVar(&o.pull, "pull", false, "always attempt to pull a newer version of the image (strata builds from images in the store: only --pull=false is accepted)")
	f.StringVar(&o.network, "network", container.NetworkPrivate, "network for the RUN instructions: private, host or none")
	f.StringArrayVar(&o.labels, "label", nil, "set metadata for an image (KEY=VALUE)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress the build output and print image ID on success")
	f.StringVar(&o.iidfile, "iidfile", "", "write the image ID to the file")
	f.StringVar(&o.progress, "progress", "auto", "set type of progress output (auto, plain, quiet)")
	return cmd
}

func runBuild(cmd *cobra.Command, g *globals, o *buildOptions, ctxArg string) error {
	if o.pull {
		return fmt.Errorf("--pull: strata build uses the images in the store and pulls none: %w", layerstore.ErrInvalid)
	}
	bo := build.Options{Target: o.target, NoCache: o.noCache, Network: o.network, Tags: o.tags, Runtime: runcRuntime()}
	switch o.network {
	case "default", "bridge":
		bo.Network = container.NetworkPrivate
	case container.NetworkPrivate, container.NetworkHost, container.NetworkNone:
	default:
		return fmt.Errorf("--network %q: want private, host or none: %w", o.network, layerstore.ErrInvalid)
	}
	for _, t := range o.tags {
		if _, err := layerstore.ParseTag(t); err != nil {
			return err
		}
	}
	bo.BuildArgs = map[string]string{}
	for _, a := range o.buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			if v, ok = os.LookupEnv(k); !ok {
				continue // docker drops a KEY the environment has not
			}
		}
		bo.BuildArgs[k] = v
	}
	if len(o.labels) > 0 {
		bo.Labels = map[string]string{}
		for _, l := range o.labels {
			k, v, _ := strings.Cut(l, "=")
			bo.Labels[k] = v
		}
	}
	switch o.progress {
	case "auto", "plain", "tty":
		if !o.quiet {
			bo.Progress = cmd.ErrOrStderr()
		}
	case "quiet":
	default:
		return fmt.Errorf("--progress %q: want auto, plain or quiet: %w", o.progress, layerstore.ErrInvalid)
	}
	stdin := cmd.InOrStdin()
	if ctxArg == "-" {
		if o.file == "-" {
			return fmt.Errorf("-f - and a context from stdin: only one of them can be read from stdin: %w", layerstore.ErrInvalid)
		}
		dir, df, err := readStdinContext(stdin)
		if err != nil {
			return err
		}
		if dir != "" {
			defer os.RemoveAll(dir)
			bo.Context = dir
			if o.file != "" {
				bo.Dockerfile = filepath.Join(dir, filepath.Clean("/"+o.file))
			}
		} else {
			bo.DockerfileData = df
		}
	} else {
		fi, err := os.Stat(ctxArg)
		if err != nil {
			return fmt.Errorf("unable to prepare context: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("unable to prepare context: %s is not a directory: %w", ctxArg, layerstore.ErrInvalid)
		}
		bo.Context = ctxArg
		switch o.file {
		case "-":
			data, err := io.ReadAll(stdin)
			if err != nil {
				return err
			}
			bo.DockerfileData = data
		case "":
		default:
			bo.Dockerfile = o.file
		}
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	// Ctrl-C stops the RUN in flight and cleans up (no image, no mount).
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	img, err := build.Build(ctx, s, bo)
	if err != nil {
		return err
	}
	if o.iidfile != "" {
		if err := os.WriteFile(o.iidfile, []byte(img.ID.String()), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintln(cmd.OutOrStdout(), img.ID)
	return nil
}

// readStdinContext reads docker build -'s stdin: a tar (possibly
// compressed) is the context, unpacked into a temporary directory;
// anything else is a Dockerfile alone.
func readStdinContext(r io.Reader) (dir string, dockerfile []byte, err error) {
	br := bufio.NewReader(r)
	d, _, derr := layerstore.Decompress(br)
	if derr == nil {
		bd := bufio.NewReader(d)
		head, _ := bd.Peek(512)
		if _, terr := tar.NewReader(bytes.NewReader(head)).Next(); terr == nil {
			dir, err := os.MkdirTemp("", "strata-build-context-")
			if err != nil {
				return "", nil, err
			}
			if err := untarContext(bd, dir); err != nil {
				os.RemoveAll(dir)
				return "", nil, fmt.Errorf("build context from stdin: %w", err)
			}
			return dir, nil, nil
		}
		data, err := io.ReadAll(bd)
		return "", data, err
	}
	data, err := io.ReadAll(br)
	return "", data, err
}

// untarContext unpacks a context tar into dir: regular files, directories
// and symlinks. Every name is created through an os.Root of dir, so no
// entry (nor a symlink an earlier entry made) can reach outside it.
func untarContext(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		if name == "" {
			continue
		}
		if err := untarEntry(root, name, h, tr); err != nil {
			return fmt.Errorf("build context: %s: %w", h.Name, err)
		}
	}
}

func untarEntry(root *os.Root, name string, h *tar.Header, tr io.Reader) error {
	if d := filepath.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	mode := os.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		return root.MkdirAll(name, mode|0o700)
	case tar.TypeReg:
		f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, mode)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		return errors.Join(err, f.Close())
	case tar.TypeSymlink:
		return root.Symlink(h.Linkname, name)
	}
	return nil
}

type builderPruneOptions struct{ force bool }

func newBuilderCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "builder", Short: "Manage builds", Args: cobra.NoArgs, GroupID: "image"}
	o := &builderPruneOptions{}
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove build cache",
		Long: `Empty the build cache, and remove the intermediate images only it held
(untagged, used by no mount or container), with the layers nothing else holds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if !o.force && !confirm(cmd.InOrStdin(), out, "WARNING! This will remove all dangling build cache.\nAre you sure you want to continue?") {
				return nil
			}
			s, err := g.openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			rep, err := s.PruneCache()
			if err != nil {
				return err
			}
			for _, d := range rep.Deleted[:rep.DeletedImages] {
				fmt.Fprintln(out, "deleted:", d)
			}
			fmt.Fprintln(out, "Total:", humanSize(rep.Reclaimed, 4))
			return nil
		},
	}
	prune.Flags().BoolVarP(&o.force, "force", "f", false, "do not prompt for confirmation")
	cmd.AddCommand(prune)
	return cmd
}
