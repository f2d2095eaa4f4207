package layerstore

import (
	"errors"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// diskUsage is the bytes a file occupies on disk (sparse files count their data only).
func diskUsage(path string) int64 {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// DirUsage is the disk space the dirs and everything under them take, as
// du counts it: allocated blocks (a sparse file counts its data only), each
// inode once however many hard links, in whichever of the dirs, name it. It
// is the one measure of a mount's top layer (MountUsage), for DiskUsage,
// `strata mounts` and GC alike. An entry that vanishes during the walk (a
// live mount's top layer changes while it is measured) is skipped; a dir
// that does not exist is an error wrapping fs.ErrNotExist.
func DirUsage(dirs ...string) (int64, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				if p != dir && errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				if p != dir && errors.Is(err, unix.ENOENT) {
					return nil
				}
				return &fs.PathError{Op: "lstat", Path: p, Err: err}
			}
			k := inode{uint64(st.Dev), st.Ino}
			if !seen[k] {
				seen[k] = true
				total += st.Blocks * 512
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}
