package fs

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PassthroughAvailable reports whether mounts made here can use FUSE
// passthrough, and says why not: it needs Linux 6.9+ and CAP_SYS_ADMIN. A
// mount still asks the kernel and probes its backing files (a store on
// overlayfs or FUSE may be refused); this is what can be known before.
func PassthroughAvailable() (bool, string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false, "unknown (" + err.Error() + ")"
	}
	release := unix.ByteSliceToString(u.Release[:])
	major, minor := kernelVersion(release)
	switch {
	case major < 6 || (major == 6 && minor < 9):
		return false, fmt.Sprintf("Linux %s has none (needs 6.9+)", release)
	case os.Geteuid() != 0:
		return false, fmt.Sprintf("Linux %s has it, but it needs root (CAP_SYS_ADMIN)", release)
	}
	return true, fmt.Sprintf("Linux %s, root", release)
}

// kernelVersion parses "6.18.3-amd64" as 6, 18.
func kernelVersion(release string) (major, minor int) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	digits := func(s string) int {
		end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		if end < 0 {
			end = len(s)
		}
		n, _ := strconv.Atoi(s[:end])
		return n
	}
	return digits(parts[0]), digits(parts[1])
}
