package mountserver

// Where a mount may go, who may make one, and what holds a busy one: the
// sentences "strata mount" says instead of hiding a directory's files,
// stacking mounts, or passing on fusermount's exit status.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-dev/strata/session"
)

// CheckMountpoint refuses, unless force, a directory that holds files (the
// mount would hide them) or that is already a mount point (the mount would
// stack on it).
func CheckMountpoint(dir string, force bool) error {
	if force {
		return nil
	}
	if mi, err := session.ReadMountinfo(); err == nil {
		if fstype, ok := session.Mounted(mi, dir); ok {
			return fmt.Errorf("%s is already a mount point (%s): a mount there would hide it; unmount it first, or mount elsewhere (--force mounts on top of it)", dir, fstype)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(3)
	if err != nil && len(names) == 0 {
		return nil // empty (io.EOF)
	}
	shown := strings.Join(names, ", ")
	if len(names) == 3 {
		shown += ", …"
	}
	return fmt.Errorf("%s is not empty (%s): the mount would hide what is there until it ends; use an empty directory (--force mounts over it anyway)", dir, shown)
}

// CheckMountUser says in one sentence what a user other than root can do,
// instead of the error fusermount would give: a writable mount's top layer
// keeps whiteouts and file owners as trusted.* extended attributes, which
// only root may set.
func CheckMountUser(readOnly bool) error {
	if os.Geteuid() == 0 {
		return nil
	}
	if !readOnly {
		return fmt.Errorf("a writable mount needs root (its top layer keeps whiteouts and owners as trusted.* extended attributes, which only root may set): as a user, mount read-only with \"strata mount --read-only IMAGE DIR\", where /dev/fuse is usable")
	}
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		return fmt.Errorf("a read-only mount as a user needs /dev/fuse to be usable (%v): ask for access to it, or mount as root", err)
	} else {
		f.Close()
	}
	return nil
}

// Holder is a process using something under a mount.
type Holder struct {
	PID  int
	Name string // comm
	What string // "working directory", "root directory" or an open file's path
}

// Holders lists the processes with their working or root directory, or an
// open file, under dir (read from /proc; processes we may not look at are
// left out).
func Holders(dir string) []Holder {
	dir = filepath.Clean(dir)
	under := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []Holder
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		base := filepath.Join("/proc", e.Name())
		comm, _ := os.ReadFile(filepath.Join(base, "comm"))
		name := strings.TrimSpace(string(comm))
		found := ""
		if p, err := os.Readlink(filepath.Join(base, "cwd")); err == nil && under(p) {
			found = "working directory " + p
		} else if p, err := os.Readlink(filepath.Join(base, "root")); err == nil && p != "/" && under(p) {
			found = "root directory " + p
		} else if fds, err := os.ReadDir(filepath.Join(base, "fd")); err == nil {
			for _, fd := range fds {
				if p, err := os.Readlink(filepath.Join(base, "fd", fd.Name())); err == nil && under(p) {
					found = "open file " + p
					break
				}
			}
		}
		if found != "" {
			out = append(out, Holder{PID: pid, Name: name, What: found})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// BusySentence is what a foreground mount says when Ctrl-C finds it in use.
func BusySentence(dir string, hs []Holder) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is in use, so it stays mounted until nothing uses it", dir)
	if len(hs) > 0 {
		b.WriteString(": used by ")
		for i, h := range hs {
			if i > 0 {
				b.WriteString(", ")
			}
			if i == 5 {
				fmt.Fprintf(&b, "and %d more", len(hs)-5)
				break
			}
			fmt.Fprintf(&b, "%s (pid %d, %s)", h.Name, h.PID, h.What)
		}
	}
	fmt.Fprintf(&b, ". End or move those, or detach the mount now with \"strata umount -l %s\" (it then goes once they let go).", dir)
	return b.String()
}
