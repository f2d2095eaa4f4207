package container

import (
	"archive/tar"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// paxXattr prefixes an extended attribute's name in a PAX record, as GNU
// tar, docker and Go's archive/tar write them.
const paxXattr = "SCHILY.xattr."

// readXattrs returns the extended attributes of what O_PATH descriptor fd
// names (a symlink's own, for one: getxattr through /proc/self/fd/N stops
// at the link) as PAX records, nil when it has none or its file system
// keeps none. security.selinux is left out: a label of
// this machine's policy, not of the file.
func readXattrs(fd int) (map[string]string, error) {
	p := fmt.Sprintf("/proc/self/fd/%d", fd)
	names, err := listXattrs(p)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	recs := map[string]string{}
	for _, n := range names {
		if n == "security.selinux" {
			continue
		}
		v, err := getXattr(p, n)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		recs[paxXattr+n] = string(v)
	}
	return recs, nil
}

func listXattrs(p string) ([]string, error) {
	for {
		size, err := unix.Listxattr(p, nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil || size == 0 {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Listxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		return strings.FieldsFunc(string(buf[:n]), func(r rune) bool { return r == 0 }), nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	for {
		size, err := unix.Getxattr(p, name, nil)
		if err != nil || size == 0 {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Getxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// writeXattrs sets hdr's extended attributes on what O_PATH descriptor fd
// names (a symlink itself, for one: see readXattrs). With o.HostSafe, security.*
// attributes (file capabilities, and the labels a host's LSM may act on,
// as Smack's SMACK64EXEC) and trusted.* ones are dropped, as setuid bits
// are: what stays (user.*, ACLs) gives nobody more than the file's owner
// could; security.selinux is never set. One the destination refuses (ENOTSUP,
// EPERM) is reported to o.Skipped, not fatal, as docker's extraction
// passes over EPERM.
func writeXattrs(fd int, hdr *tar.Header, o ExtractOptions) error {
	p := fmt.Sprintf("/proc/self/fd/%d", fd)
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok || name == "security.selinux" {
			continue
		}
		if o.HostSafe && (strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "trusted.")) {
			continue
		}
		err := unix.Setxattr(p, name, []byte(v), 0)
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			if o.Skipped != nil {
				o.Skipped(hdr.Name, fmt.Sprintf("extended attribute %s left out (%v)", name, err))
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}
