package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/internal/mountserver"
	"github.com/strata-dev/strata/layerstore"
)

type versionOptions struct{}

func newVersionCmd(g *globals) *cobra.Command {
	o := &versionOptions{}
	return &cobra.Command{
		Use:   "version",
		Short: "Show the strata version, its build and what this machine offers",
		Long: `Print strata's version and git commit (from the build's own record), the Go
version it was built with, whether this kernel and user get FUSE passthrough
(the kernel reads lower files itself: Linux 6.9+, root), the store format
this binary reads and writes, and what serves "strata mount -d": the
strata-mount installed beside strata, or strata itself and why. "strata --version" prints the same.`,
		Example: `  strata version
  strata --version`,
		Args:    cobra.NoArgs,
		GroupID: "store",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVersion(cmd.OutOrStdout(), g, o)
		},
	}
}

func runVersion(w io.Writer, g *globals, _ *versionOptions) error {
	_, err := io.WriteString(w, versionText(g.root))
	return err
}

// versionText is what version and --version print.
func versionText(root string) string {
	version, commit := "(unknown)", "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		if version == "" || version == "(devel)" {
			version = "dev"
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && commit != "(unknown)" {
			commit += " (with uncommitted changes)"
		}
	}
	store := "not created yet"
	if _, err := os.Stat(root); err == nil {
		store = "exists"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "strata version %s\n", version)
	fmt.Fprintf(&b, " Git commit:       %s\n", commit)
	fmt.Fprintf(&b, " Go version:       %s\n", runtime.Version())
	fmt.Fprintf(&b, " OS/Arch:          %s/%s\n", runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, " FUSE passthrough: %s\n", passthroughAvailability())
	fmt.Fprintf(&b, " Store format:     %s (store %s: %s)\n", layerstore.FormatVersion, root, store)
	fmt.Fprintf(&b, " Mount server:     %s\n", mountServer())
	return b.String()
}

// mountServer says what serves "strata mount -d": strata-mount beside
// strata, or strata itself and why.
func mountServer() string {
	share := "a process a mount"
	if n, err := mountsPerServer(); err != nil {
		share = err.Error()
	} else if n > 1 {
		share = fmt.Sprintf("shared, up to %d mounts a process", n)
	}
	p, why := mountserver.Find()
	if p != "" {
		return fmt.Sprintf("%s (protocol %d; %s)", p, mountserver.Protocol, share)
	}
	dir := "strata"
	if self, err := os.Executable(); err == nil {
		if self, err = filepath.EvalSymlinks(self); err == nil {
			dir = filepath.Dir(self)
		}
	}
	return fmt.Sprintf("strata itself (%s; no usable %s beside %s: %v)", share, mountserver.Binary, dir, why)
}

// passthroughAvailability says whether mounts here can use FUSE
// passthrough, and if not why.
func passthroughAvailability() string {
	ok, why := fs.PassthroughAvailable()
	if !ok {
		return "no: " + why + "; files are read and written through strata"
	}
	return "yes (" + why + "; off for a store on overlayfs or FUSE, as a mount's log says)"
}
