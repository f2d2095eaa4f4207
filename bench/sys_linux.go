package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const dropCachesFile = "/proc/sys/vm/drop_caches"

// canDropCaches says why cold cells cannot run, "" when they can.
func canDropCaches() string {
	if os.Geteuid() != 0 {
		return "dropping the caches needs root"
	}
	f, err := os.OpenFile(dropCachesFile, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Sprintf("cannot drop the caches: %v", err)
	}
	f.Close()
	return ""
}

// dropCaches writes back dirty data and drops the page, dentry and inode
// caches.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile(dropCachesFile, []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

func collectMeta(cfg Config, ds *Dataset) Meta {
	m := Meta{
		Date:       time.Now().UTC(),
		Command:    cfg.Command,
		CPUs:       runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		Reps:       cfg.Reps,
		Spec:       ds.Spec,
		Dir:        cfg.Dir,
		FS:         fsType(cfg.Dir),
		Tools:      map[string]string{},
		Contenders: map[string]string{},
		Load:       []string{loadAvg()},
	}
	if ds.Real != nil {
		m.Dataset = fmt.Sprintf("real: %d entries, %d regular files; layer 0 %s, layer 1 %s and a %s file, layer 2 replaces every 50th file, deletes every 97th, makes one directory opaque",
			ds.Entries, len(ds.SmallFiles)+1, strings.Join(ds.Real.Base, " "), strings.Join(ds.Real.Apps, " "), fmtBytes(float64(ds.Real.BigSize)))
	} else {
		m.Dataset = fmt.Sprintf("synthetic: %d entries", ds.Entries)
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		var n float64
		fmt.Sscanf(kb, "%f", &n)
		m.Memory = fmtBytes(n * 1024)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision":
				m.Revision = s.Value + m.Revision
			case s.Key == "vcs.modified" && s.Value == "true":
				m.Revision += "-dirty"
			}
		}
	}
	if m.Revision == "" {
		if out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12").Output(); err == nil {
			m.Revision = firstLine(string(out))
		}
	}
	for _, t := range [][]string{{"fuse-overlayfs", "--version"}, {"fio", "--version"}, {"umoci", "--version"}, {"tar", "--version"}} {
		if out, err := exec.Command(t[0], t[1:]...).CombinedOutput(); err == nil {
			m.Tools[t[0]] = versionLine(t[0], string(out))
		}
	}
	return m
}

// versionLine is the first line of a --version output that names a
// version (fuse-overlayfs prints warnings first).
func versionLine(tool, s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, tool) && (strings.Contains(l, "version") || strings.Contains(l, "fio-")) {
			return strings.TrimSpace(l)
		}
	}
	return firstLine(s)
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func fsType(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	}
	return fmt.Sprintf("0x%x", st.Type)
}
