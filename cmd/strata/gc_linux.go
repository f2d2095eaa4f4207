package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo, the fields gc needs.
type mountEntry struct {
	Dir    string // mount point, unescaped
	FSType string // "fuse", "fuse.strata", …
}

// parseMountinfo reads /proc/<pid>/mountinfo (see proc(5)): the mount point
// is field 5, the file system type the first field after the "-".
func parseMountinfo(data []byte) []mountEntry {
	var out []mountEntry
	for _, line := range bytes.Split(data, []byte("\n")) {
		f := strings.Fields(string(line))
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		out = append(out, mountEntry{Dir: unescapeMountinfo(f[4]), FSType: f[sep+1]})
	}
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space, …).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isFUSE(fstype string) bool { return fstype == "fuse" || strings.HasPrefix(fstype, "fuse.") }

// fuseMountsAt counts the FUSE mounts stacked at dir.
func fuseMountsAt(dir string) (int, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	dir = filepath.Clean(dir)
	n := 0
	for _, m := range parseMountinfo(data) {
		if m.Dir == dir && isFUSE(m.FSType) {
			n++
		}
	}
	return n, nil
}

// detachFUSE lazily detaches the FUSE mounts at dir (umount2 MNT_DETACH,
// or fusermount -u -z where an unprivileged user may not call umount2) and
// returns how many it detached. A dir that is not mounted is no error.
func detachFUSE(dir string) (int, error) {
	n, err := fuseMountsAt(dir)
	if err != nil || n == 0 {
		return 0, err
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
