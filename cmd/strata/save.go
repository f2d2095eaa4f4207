package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/layerstore/export"
	"github.com/strata-dev/strata/transfer"
)

type saveOptions struct {
	quiet       bool
	output      string
	format      string
	compression string
}

func newSaveCmd(g *globals) *cobra.Command {
	o := &saveOptions{}
	cmd := &cobra.Command{
		Use:   "save [-o PATH] [--format FORMAT] IMAGE...",
		Short: "Save images to a docker-archive, an oci-archive or an OCI layout",
		Long: `Save images as docker save does (docker-archive, to a file or standard output), or as an
oci-archive or an OCI image layout directory. Layers are written exactly as they were
imported (each hashes to its diffID), so image IDs are kept; with --compression the OCI
formats get gzip or zstd layer blobs.`,
		Example: `  strata save -o demo.tar demo
  strata save --format oci -o ./demo-layout demo:latest
  strata save --format oci-archive --compression zstd demo > demo.oci.tar`,
		Args:              cobra.MinimumNArgs(1),
		GroupID:           "image",
		ValidArgsFunction: completeImages(g, -1, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSave(cmd, g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "", "write to this file (a directory for --format oci) instead of standard output")
	f.StringVar(&o.format, "format", "docker-archive", "docker-archive, oci-archive or oci (a layout directory)")
	f.StringVar(&o.compression, "compression", "none", "layer compression for the OCI formats: none, gzip or zstd")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress the progress output")
	return cmd
}

func runSave(cmd *cobra.Command, g *globals, o *saveOptions, args []string) error {
	format := o.format
	if format == "oci" || format == "oci-dir" {
		format = export.FormatOCILayout
	}
	if format == export.FormatOCILayout && o.output == "" {
		return fmt.Errorf("--format oci writes a directory: name it with -o")
	}
	if format == export.FormatDockerArchive && o.compression != "" && o.compression != "none" {
		return fmt.Errorf("--compression %s: a docker-archive's layers are always uncompressed (docker load reads them so); use --format oci-archive or --format oci for %s layers: %w",
			o.compression, o.compression, layerstore.ErrInvalid)
	}
	if o.output != "" {
		// Named before the store is opened, and by the target, not a temp file.
		if _, err := os.Stat(filepath.Dir(o.output)); err != nil {
			return fmt.Errorf("save -o %s: invalid output path: %w", o.output, err)
		}
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	if f, ok := cmd.OutOrStdout().(*os.File); ok && o.output == "" && format != export.FormatOCILayout && isTerminal(f) {
		return fmt.Errorf("refusing to write an archive to a terminal: use -o or redirect")
	}
	// Progress goes to stderr; the archive to stdout or -o.
	pr := newProgress(cmd.ErrOrStderr(), o.quiet, "Saving", "", 0)
	defer pr.abort() // on the paths that do not end it
	opt := export.Options{Compression: o.compression, Progress: pr.update}
	what := "Saved " + strings.Join(args, ", ")
	if format == export.FormatOCILayout {
		err := transfer.Save(s, args, format, nil, o.output, opt)
		pr.done(what, err)
		return err
	}
	var w io.Writer = cmd.OutOrStdout()
	if o.output != "" {
		// Write next to the target and rename, so a failed save leaves no half file.
		f, err := os.CreateTemp(filepath.Dir(o.output), ".strata-save-*")
		if err != nil {
			return fmt.Errorf("save -o %s: %w", o.output, err)
		}
		defer os.Remove(f.Name())
		if err := transfer.Save(s, args, format, f, "", opt); err != nil {
			pr.done("", err)
			f.Close()
			return err
		}
		err = f.Close()
		if err == nil {
			err = os.Chmod(f.Name(), 0o644)
		}
		if err == nil {
			err = os.Rename(f.Name(), o.output)
		}
		if err != nil {
			pr.done("", err)
			return fmt.Errorf("save -o %s: %w", o.output, err)
		}
		pr.done(what, nil)
		return nil
	}
	err = transfer.Save(s, args, format, w, "", opt)
	pr.done(what, err)
	return err
}
