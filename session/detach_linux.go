package session

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// DetachFUSE lazily detaches the FUSE mounts stacked at dir (umount2
// MNT_DETACH, or fusermount -u -z where an unprivileged user may not call
// umount2) and returns how many it detached. A dir that is not mounted is no
// error.
func DetachFUSE(dir string) (int, error) {
	mi, err := ReadMountinfo()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range mi {
		if m.Dir == dir && IsFUSE(m.FSType) {
			n++
		}
	}
	for i := 0; i < n; i++ {
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if errors.Is(err, unix.EPERM) {
			err = fusermountDetach(dir)
		}
		switch {
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return i, nil // not a mount point (any more), or gone
		case err != nil:
			return i, &os.PathError{Op: "detach", Path: dir, Err: err}
		}
	}
	return n, nil
}

// fusermountDetach runs fusermount3 (or fusermount) -u -z dir.
func fusermountDetach(dir string) error {
	var errs []error
	for _, prog := range []string{"fusermount3", "fusermount"} {
		path, err := exec.LookPath(prog)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "-u", "-z", dir).CombinedOutput()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w: %s", prog, err, bytes.TrimSpace(out)))
	}
	if len(errs) == 0 {
		return unix.EPERM
	}
	return errors.Join(errs...)
}
