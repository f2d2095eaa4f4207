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
	case os.Geteuid() != 0 || !hasSysAdmin():
		return false, fmt.Sprintf("Linux %s has it, but it needs root with CAP_SYS_ADMIN", release)
	case !initialUserNS():
		return false, fmt.Sprintf("Linux %s has it, but not in a user namespace (it needs CAP_SYS_ADMIN in the initial one)", release)
	}
	return true, fmt.Sprintf("Linux %s, root", release)
}

// hasSysAdmin reports whether CAP_SYS_ADMIN is in this process's effective
// set (the kernel's check for registering a backing file).
func hasSysAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true // let the mount's own probe tell
	}
	for _, l := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err != nil || caps&(1<<unix.CAP_SYS_ADMIN) != 0
		}
	}
	return true
}

// initialUserNS reports whether this process is in the initial user
// namespace (its uid map is the identity over every uid).
func initialUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
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
