package testsuite

// go-fuse's posixtest table, each case against a fresh mount, in two places:
// the root of a mount of an empty tree (everything lives in the upper dir),
// and tmp/ of a mount of the fixture image (an empty directory of a lower
// layer, which the first change copies up). posixtest expects an empty,
// writable directory; both are.

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// suitePosixSkip lists the posixtest cases that do not apply, and why. A
// case belongs here only when it fails on a plain directory of the host
// file system (ext4) too.
var suitePosixSkip = map[string]string{
	// Two opens of one file by one process take a write and then a read
	// POSIX lock and expect EAGAIN. POSIX locks belong to the process, so
	// the second replaces the first: ext4 returns success, and so does the
	// kernel's own lock handling, which strata uses. (It passes on go-fuse's
	// loopback, which turns POSIX locks into per-handle OFD locks.) The
	// "flock and fcntl locks" script checks locks against ext4 instead.
	"FcntlFlockLocksFile": "POSIX locks are per process: a plain ext4 directory fails this case too",
}

func (ts *suite) testPosix(t *testing.T) {
	places := []struct {
		name string
		img  *suiteImage
		dir  string
	}{
		{"empty", ts.empty, ""},
		{"lowerdir", ts.demo, "tmp"},
	}
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, pl := range places {
		for _, wb := range []bool{false, true} {
			name := pl.name
			if wb {
				name += "/writeback"
			}
			t.Run(name, func(t *testing.T) {
				img := pl.img
				for _, name := range names {
					t.Run(name, func(t *testing.T) {
						if why, ok := suitePosixSkip[name]; ok {
							t.Skip(why)
						}
						m := ts.mountImage(t, img, suiteMountOptions{Writeback: wb})
						posixtest.All[name](t, filepath.Join(m.Dir, pl.dir))
					})
				}
			})
		}
	}
}
