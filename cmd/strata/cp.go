package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
)

type cpOptions struct {
	archive, followLink bool
}

func newCpCmd(g *globals) *cobra.Command {
	o := &cpOptions{}
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n  strata cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Long: `Copy files and directories between a container (running or stopped) and the
host, as docker cp does. A directory is copied whole; SRC_PATH/. copies what it
holds. A DEST_PATH that is an existing directory receives SRC_PATH inside it;
one that does not exist is created (its parent must exist). "-" reads a tar
stream from standard input into a directory of the container, or writes one of
SRC_PATH to standard output.

Paths in the container are resolved inside its root file system: no symlink
or ".." in it leads out to the host. Copied into the container, files are
owned by root unless -a keeps the source's owners; copied out, they are owned
by the calling user, with their setuid and setgid bits, security.* attributes
(file capabilities, LSM labels) and trusted.* attributes dropped and device
nodes left out, unless -a keeps all of it. Other extended attributes (user.*, ACLs) are
copied both ways; docker cp copies file capabilities only.`,
		Example: `  strata cp web:/etc/hostname .
  strata cp ./site/. web:/var/www
  strata cp web:/var/log - | tar t`,
		Args:    cobra.ExactArgs(2),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCp(cmd, g, o, args[0], args[1])
		},
	}
	cmd.Flags().BoolVarP(&o.archive, "archive", "a", false, "archive mode (copy all uid/gid information)")
	cmd.Flags().BoolVarP(&o.followLink, "follow-link", "L", false, "always follow symbol link in SRC_PATH")
	return cmd
}

// splitCpArg splits CONTAINER:PATH as docker does: an absolute path or one
// starting with "." is local, colon or not.
func splitCpArg(arg string) (ctr, p string) {
	if filepath.IsAbs(arg) {
		return "", arg
	}
	name, rest, ok := strings.Cut(arg, ":")
	if !ok || strings.HasPrefix(name, ".") {
		return "", arg
	}
	return name, rest
}

func runCp(cmd *cobra.Command, g *globals, o *cpOptions, src, dst string) error {
	srcCtr, srcPath := splitCpArg(src)
	dstCtr, dstPath := splitCpArg(dst)
	switch {
	case srcCtr != "" && dstCtr != "":
		return errors.New("copying between containers is not supported")
	case srcCtr == "" && dstCtr == "":
		return errors.New("must specify at least one container source")
	}
	_, c, err := g.openContainers()
	if err != nil {
		return err
	}
	ctr := srcCtr + dstCtr
	root, err := c.OpenCopyRoot(cmd.Context(), ctr)
	if errors.Is(err, container.ErrNotFound) {
		return fmt.Errorf("No such container: %s", ctr)
	}
	if err != nil {
		return err
	}
	if srcCtr != "" {
		err = copyFromContainer(cmd, root, o, srcCtr, srcPath, dstPath)
	} else {
		err = copyToContainer(cmd, root, o, dstCtr, srcPath, dstPath)
	}
	return errors.Join(err, root.Close())
}

// splitPathDirEntry is docker's: the parent and the last element, "." for
// a path that ends in /.
func splitPathDirEntry(p string) (dir, base string) {
	clean := filepath.Clean(p)
	if strings.HasSuffix(p, "/.") || p == "." {
		clean += "/."
	}
	return filepath.Dir(clean), filepath.Base(clean)
}

// copyInfo is a side of a copy: where, whether it exists and is a
// directory, and the name its top entry takes (docker's CopyInfo).
type copyInfo struct {
	path          string
	exists, isDir bool
	rebase        string
}

// prepareCopy is docker's PrepareArchiveCopy: the directory to extract into
// and the name the archive's top entry takes there.
func prepareCopy(src, dst copyInfo) (dir, top string, err error) {
	dstDir, dstBase := splitPathDirEntry(dst.path)
	_, srcBase := splitPathDirEntry(src.path)
	if src.rebase != "" {
		srcBase = src.rebase
	}
	switch {
	case dst.exists && dst.isDir:
		return dst.path, srcBase, nil
	case dst.exists && src.isDir:
		return "", "", errors.New("cannot copy directory")
	case !dst.exists && !src.isDir && (strings.HasSuffix(dst.path, "/") || strings.HasSuffix(dst.path, "/.")):
		return "", "", errors.New("no such directory")
	}
	return dstDir, dstBase, nil
}

// rebaseName is docker's GetRebaseName: the name a followed link keeps.
func rebaseName(p, resolved string) (string, string) {
	if strings.HasSuffix(p, "/.") && !strings.HasSuffix(resolved, "/.") {
		resolved += "/."
	} else if strings.HasSuffix(p, "/") && !strings.HasSuffix(resolved, "/") {
		resolved += "/"
	}
	if filepath.Base(p) != filepath.Base(resolved) {
		return resolved, filepath.Base(p)
	}
	return resolved, ""
}

func copyFromContainer(cmd *cobra.Command, root *container.CopyRoot, o *cpOptions, ctr, srcPath, dstPath string) error {
	if srcPath == "" {
		srcPath = "/"
	}
	notFound := func() error { return fmt.Errorf("No such container:path: %s:%s", ctr, srcPath) }
	st, err := root.Lstat(srcPath)
	if err != nil {
		return notFound()
	}
	rebase := ""
	if o.followLink && st.Mode&os.ModeSymlink != 0 {
		var resolved string
		resolved, rebase = rebaseName(srcPath, st.LinkTarget)
		if rebase == "" {
			rebase = filepath.Base(srcPath)
		}
		srcPath = resolved
		if st, err = root.Lstat(srcPath); err != nil {
			return notFound()
		}
	}
	src := copyInfo{path: srcPath, exists: true, isDir: st.Mode.IsDir(), rebase: rebase}
	if dstPath == "-" {
		_, top := splitPathDirEntry(srcPath)
		if rebase != "" {
			top = rebase
		}
		return root.Archive(cmd.OutOrStdout(), srcPath, top)
	}
	dst, err := hostDestination(dstPath)
	if err != nil {
		return err
	}
	dir, top, err := prepareCopy(src, dst)
	if err != nil {
		return err
	}
	host, err := container.OpenTree(dir)
	if err != nil {
		return err
	}
	defer host.Close()
	xo := container.ExtractOptions{}
	if !o.archive {
		xo.NoChown, xo.HostSafe = true, true
	}
	xo.Skipped = func(name, what string) {
		hint := ""
		if strings.HasPrefix(what, "device") {
			hint = " (-a copies it)"
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "strata cp: %s: %s%s\n", name, what, hint)
	}
	return pipeTree(func(w io.Writer) error { return root.Archive(w, srcPath, top) },
		func(r io.Reader) error { return host.Extract("/", r, xo) })
}

// hostDestination is docker's CopyInfoDestinationPath: dst with its
// symlinks followed; a missing one needs an existing parent directory.
func hostDestination(dst string) (copyInfo, error) {
	p, err := filepath.Abs(dst)
	if err != nil {
		return copyInfo{}, err
	}
	if strings.HasSuffix(dst, "/") || strings.HasSuffix(dst, "/.") {
		p += dst[strings.LastIndex(dst, "/"):]
	}
	for n := 0; ; n++ {
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			parent, _ := splitPathDirEntry(p)
			pi, err := os.Stat(parent)
			if err != nil {
				return copyInfo{}, err
			}
			if !pi.IsDir() {
				return copyInfo{}, fmt.Errorf("%s: not a directory", parent)
			}
			return copyInfo{path: p}, nil
		}
		if err != nil {
			return copyInfo{}, err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if !fi.IsDir() && !fi.Mode().IsRegular() {
				return copyInfo{}, fmt.Errorf("invalid output path: %q must be a directory or a regular file", dst)
			}
			return copyInfo{path: p, exists: true, isDir: fi.IsDir()}, nil
		}
		if n >= 10 {
			return copyInfo{}, errors.New("too many symlinks in " + dst)
		}
		target, err := os.Readlink(p)
		if err != nil {
			return copyInfo{}, err
		}
		if !filepath.IsAbs(target) {
			parent, _ := splitPathDirEntry(p)
			target = filepath.Join(parent, target)
		}
		p = target
	}
}

func copyToContainer(cmd *cobra.Command, root *container.CopyRoot, o *cpOptions, ctr, srcPath, dstPath string) error {
	if dstPath == "" {
		dstPath = "/"
	}
	dst := copyInfo{path: dstPath}
	st, err := root.Lstat(dstPath)
	if err == nil && st.Mode&os.ModeSymlink != 0 {
		dst.path = st.LinkTarget
		st, err = root.Lstat(dst.path)
	}
	if err == nil {
		if !st.Mode.IsDir() && !st.Mode.IsRegular() {
			return fmt.Errorf("destination \"%s:%s\" must be a directory or a regular file", ctr, dstPath)
		}
		dst.exists, dst.isDir = true, st.Mode.IsDir()
	}
	xo := container.ExtractOptions{Owner: &container.Owner{}, Skipped: func(name, what string) {
		fmt.Fprintf(cmd.ErrOrStderr(), "strata cp: %s: %s\n", name, what)
	}}
	if o.archive {
		xo.Owner = nil
	}
	if srcPath == "-" {
		if !dst.isDir {
			return fmt.Errorf("destination \"%s:%s\" must be a directory", ctr, dstPath)
		}
		if err := root.WritableAt(dst.path); err != nil {
			return err
		}
		return root.Extract(dst.path, cmd.InOrStdin(), xo)
	}
	src, err := hostSource(srcPath, o.followLink)
	if err != nil {
		return err
	}
	dir, top, err := prepareCopy(src, dst)
	if err != nil {
		return err
	}
	if err := root.WritableAt(dir); err != nil {
		return err
	}
	if st, err := root.Lstat(dir); err != nil {
		return fmt.Errorf("No such container:path: %s:%s", ctr, dir)
	} else if !st.Mode.IsDir() && st.Mode&os.ModeSymlink == 0 {
		return errors.New("extraction point is not a directory")
	}
	host, err := container.OpenTree("/")
	if err != nil {
		return err
	}
	defer host.Close()
	return pipeTree(func(w io.Writer) error { return host.Archive(w, src.path, top) },
		func(r io.Reader) error { return root.Extract(dir, r, xo) })
}

// hostSource is docker's CopyInfoSourcePath: the host path's parents
// followed, the last element too with -L (its name kept).
func hostSource(p string, follow bool) (copyInfo, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return copyInfo{}, err
	}
	if strings.HasSuffix(p, "/.") {
		abs += "/."
	} else if strings.HasSuffix(p, "/") && abs != "/" {
		abs += "/"
	}
	var resolved, rebase string
	if follow {
		r, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return copyInfo{}, err
		}
		resolved, rebase = rebaseName(abs, r)
	} else {
		dir, base := filepath.Split(abs)
		rd, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return copyInfo{}, err
		}
		resolved = filepath.Join(rd, base)
		if strings.HasSuffix(abs, "/.") {
			resolved += "/."
		}
	}
	fi, err := os.Lstat(resolved)
	if err != nil {
		return copyInfo{}, err
	}
	return copyInfo{path: resolved, exists: true, isDir: fi.IsDir(), rebase: rebase}, nil
}

// pipeTree runs an archive writer and an extracting reader together.
func pipeTree(write func(io.Writer) error, read func(io.Reader) error) error {
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := write(pw)
		pw.CloseWithError(err)
		werr <- err
	}()
	rerr := read(pr)
	pr.CloseWithError(errors.New("extraction ended"))
	if err := <-werr; err != nil && rerr == nil {
		return err
	}
	return rerr
}
