package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
)

type importOptions struct {
	changes []string
	message string
	quiet   bool
}

func newImportCmd(g *globals) *cobra.Command {
	o := &importOptions{}
	cmd := &cobra.Command{
		Use:   "import TARBALL|- [NAME[:TAG]]",
		Short: "Make a one-layer image from a root filesystem tarball",
		Long: `Make a one-layer image from a plain root filesystem tarball (gzip, zstd or
uncompressed), as docker import does. "-" reads the tarball from standard input.
--change applies Dockerfile instructions to the config: CMD, ENTRYPOINT, ENV,
EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL.`,
		Example: `  strata import rootfs.tar myroot:1.0
  strata import --change 'CMD ["/bin/sh"]' --change 'ENV A=1' rootfs.tar.gz myroot
  tar -C dir -c . | strata import - myroot`,
		Args:    cobra.RangeArgs(1, 2),
		GroupID: "image",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImport(cmd, g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.changes, "change", "c", nil, "apply a Dockerfile instruction to the image config")
	f.StringVarP(&o.message, "message", "m", "", "commit message for the history entry")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress the progress output")
	return cmd
}

func runImport(cmd *cobra.Command, g *globals, o *importOptions, args []string) error {
	var names []string
	if len(args) == 2 {
		n, err := layerstore.ParseTag(args[1])
		if err != nil {
			return err
		}
		names = append(names, n)
	}
	edits, err := parseChanges(o.changes)
	if err != nil {
		return err
	}
	src := args[0]
	// Look at the start of the tarball before the store is touched, so
	// that an empty file or one that is no tar stores nothing.
	var stdin *bufio.Reader
	if src == "-" {
		stdin = bufio.NewReaderSize(cmd.InOrStdin(), sniffSize)
		if err := sniffTarball(stdin); err != nil {
			return fmt.Errorf("import from standard input: %w", err)
		}
	} else {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		err = sniffTarball(bufio.NewReaderSize(f, sniffSize))
		f.Close()
		if err != nil {
			return fmt.Errorf("import %s: %w", src, err)
		}
	}
	open := func() (io.ReadCloser, error) {
		if stdin != nil {
			return io.NopCloser(stdin), nil
		}
		return os.Open(src)
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	pr := newProgress(cmd.ErrOrStderr(), o.quiet, "Importing", "Writing to the store", 1)
	defer pr.abort() // on the paths that do not end it
	img, err := s.NewImage(cmd.Context(), layerstore.NewImageOptions{
		Layers: []layerstore.NewLayer{{Open: open, History: ocispec.History{CreatedBy: "Imported from " + src, Comment: o.message}}},
		Edit: func(cfg *ocispec.Image) error {
			for _, e := range edits {
				if err := e(&cfg.Config); err != nil {
					return err
				}
			}
			return nil
		},
		Names:    names,
		Progress: pr.update,
	})
	if err != nil {
		pr.done("", err)
		return fmt.Errorf("import %s: %w", src, err)
	}
	what := "Imported " + truncateID(img.ID)
	if len(names) > 0 {
		what = "Imported " + names[0]
	}
	pr.done(what, nil)
	fmt.Fprintln(cmd.OutOrStdout(), img.ID)
	return nil
}

// sniffSize is how much of a tarball sniffTarball looks at: enough
// compressed bytes for the first header of any gzip or zstd tar.
const sniffSize = 64 << 10

// sniffTarball checks, without consuming r, that it starts as a tar
// (plain, gzip or zstd): an empty input and one that is not a tar are
// refused with what they are. A valid empty archive passes (as in docker,
// an image with no files).
func sniffTarball(r *bufio.Reader) error {
	head, err := r.Peek(sniffSize)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return err
	}
	if len(head) == 0 {
		return fmt.Errorf("the tarball is empty (0 bytes): want a tar of a root filesystem: %w", layerstore.ErrInvalid)
	}
	zr, kind, err := layerstore.Decompress(bytes.NewReader(head))
	if err != nil {
		return fmt.Errorf("not a tar archive: %w", err)
	}
	defer zr.Close()
	_, err = tar.NewReader(zr).Next()
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	if errors.Is(err, io.ErrUnexpectedEOF) && len(head) == sniffSize {
		return nil // a first entry longer than what was looked at
	}
	what := "not a tar archive"
	if kind != "none" {
		what = "not a tar archive inside its " + kind + " compression"
	}
	return fmt.Errorf("%s (%v): want a tar of a root filesystem, plain, gzip or zstd: %w", what, err, layerstore.ErrInvalid)
}
