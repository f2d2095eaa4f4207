package mountserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Binary is the file name of the small mount server, installed beside
// strata ("go install ./cmd/..." installs both).
const Binary = "strata-mount"

// Find returns the path of strata-mount beside the running executable (the
// real file os.Executable resolves to), symlinks resolved, or "" and why
// not (wrapping os.ErrNotExist when there is none) (the caller then serves with strata itself). Only beside: one found
// in PATH may be another version's. And only one nobody else could have
// put there, since strata may run it as root: the file must be a regular,
// executable file owned by root or by strata's own owner and writable by
// no one else, in a directory that is owned by one of them and writable by
// no one else (sticky or not); a symlink named strata-mount must itself be
// owned by one of them, and its target passes the same checks.
func Find() (path string, why error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return "", err
	}
	fi, err := os.Stat(self)
	if err != nil {
		return "", err
	}
	owner := fi.Sys().(*syscall.Stat_t).Uid
	p := filepath.Join(filepath.Dir(self), Binary)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("there is none (%w)", os.ErrNotExist)
	}
	if err := trusted(p, owner); err != nil {
		return "", err
	}
	li, err := os.Lstat(p)
	if err != nil {
		return "", err
	}
	if li.Mode()&os.ModeSymlink != 0 {
		if p, err = filepath.EvalSymlinks(p); err != nil {
			return "", err
		}
		if err := trusted(p, owner); err != nil {
			return "", err
		}
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return "", fmt.Errorf("%s is not a regular file", p)
		}
	} else if !li.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", p)
	}
	if fi, err := os.Stat(p); err != nil {
		return "", err
	} else if fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not executable", p)
	}
	return p, nil
}

// trusted says why p (not followed) or its directory could have been put
// or changed there by a user other than root and owner, or nil.
func trusted(p string, owner uint32) error {
	for _, q := range []string{filepath.Dir(p), p} {
		fi, err := os.Lstat(q)
		if err != nil {
			return err
		}
		uid := fi.Sys().(*syscall.Stat_t).Uid
		if uid != 0 && uid != owner {
			return fmt.Errorf("%s is owned by uid %d, neither root nor strata's owner (uid %d)", q, uid, owner)
		}
		if fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("%s is writable by group or others (%v)", q, fi.Mode())
		}
	}
	return nil
}
