package container

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// openInRoot opens name (absolute or relative, inside the container) under
// rootfs, resolving every symlink and ".." as if rootfs were "/".
func openInRoot(rootfs, name string, flags int) (*os.File, error) {
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rootfs, Err: err}
	}
	defer unix.Close(root)
	rel := strings.TrimLeft(path.Clean("/"+name), "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), path.Join(rootfs, rel)), nil
}

// mkdirAllInRoot makes dir and its missing parents inside rootfs (mode
// 0755, owned by root, as docker makes a missing WORKDIR), never leaving it.
func mkdirAllInRoot(rootfs, dir string) error {
	parts := strings.Split(strings.Trim(path.Clean("/"+dir), "/"), "/")
	cur := "/"
	for _, p := range parts {
		if p == "" {
			continue
		}
		parent, err := openInRoot(rootfs, cur, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(int(parent.Fd()), p, 0o755)
		parent.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "mkdir", Path: path.Join(cur, p), Err: err}
		}
		cur = path.Join(cur, p)
		// A name that exists must be (or lead to) a directory.
		f, err := openInRoot(rootfs, cur, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("working directory %s: %w", dir, err)
		}
		f.Close()
	}
	return nil
}
