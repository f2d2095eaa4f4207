package session

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MountInfo is one line of /proc/<pid>/mountinfo (see proc(5)).
type MountInfo struct {
	ID, Parent int
	Root       string // the mount's root within its file system, unescaped
	Dir        string // the mount point, unescaped
	Options    string // per-mount options
	FSType     string // "ext4", "fuse", "fuse.strata", …
	Source     string // unescaped
}

// ReadMountinfo reads this process's mount table.
func ReadMountinfo() ([]MountInfo, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return ParseMountinfo(data), nil
}

// ParseMountinfo parses mountinfo lines:
//
//	36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// fields 1-6, optional fields up to a lone "-", then the file system type,
// source and super options. The kernel escapes space, tab, newline and
// backslash in paths as octal (\040, \011, \012, \134). Malformed lines are
// skipped.
func ParseMountinfo(data []byte) []MountInfo {
	var out []MountInfo
	for _, line := range bytes.Split(data, []byte("\n")) {
		f := strings.Fields(string(line))
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, MountInfo{
			ID:      id,
			Parent:  parent,
			Root:    unescape(f[3]),
			Dir:     unescape(f[4]),
			Options: f[5],
			FSType:  f[sep+1],
			Source:  unescape(f[sep+2]),
		})
	}
	return out
}

// unescape undoes the kernel's octal escapes.
func unescape(s string) string {
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

// Mounted reports whether dir is a mount point in mi, and the file system
// type of the topmost mount there.
func Mounted(mi []MountInfo, dir string) (fstype string, ok bool) {
	dir = filepath.Clean(dir)
	for _, m := range mi {
		if m.Dir == dir {
			fstype, ok = m.FSType, true
		}
	}
	return fstype, ok
}

// MountsUnder lists the mount points in mi at or below dir, deepest first.
func MountsUnder(mi []MountInfo, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, m := range mi {
		if m.Dir == dir || strings.HasPrefix(m.Dir, dir+"/") {
			out = append(out, m.Dir)
		}
	}
	// Deeper first, and the later of two mounts on one point first.
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// IsFUSE reports whether fstype is a FUSE file system ("fuse", "fuse.NAME";
// not "fuseblk", which is a block device's).
func IsFUSE(fstype string) bool { return fstype == "fuse" || strings.HasPrefix(fstype, "fuse.") }
