package container

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Volume is a directory from outside the image mounted into a container: a
// host directory (a bind) or a volume of the store (<store>/volumes/NAME/_data),
// named, or anonymous: made for the container and removed with it by rm -v.
type Volume struct {
	Type        string `json:"type"` // "bind" or "volume"
	Name        string `json:"name,omitempty"`
	Source      string `json:"source"` // host path
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
	Anonymous   bool   `json:"anonymous,omitempty"`
}

var validVolumeName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`) })

// ParseVolume reads a -v argument as docker does: HOST-PATH:CTR-PATH[:ro|rw]
// (a bind; a relative host path starts with ./ or ../), NAME:CTR-PATH[:ro|rw]
// (a named volume) or CTR-PATH (an anonymous volume).
func ParseVolume(spec string) (Volume, error) {
	parts := strings.Split(spec, ":")
	bad := func(why string) (Volume, error) {
		return Volume{}, fmt.Errorf("invalid volume specification: '%s': %s", spec, why)
	}
	var v Volume
	switch len(parts) {
	case 1:
		v = Volume{Type: "volume", Destination: parts[0], Anonymous: true}
	case 2, 3:
		v = Volume{Destination: parts[1]}
		src := parts[0]
		switch {
		case src == "":
			return bad("no source")
		case filepath.IsAbs(src) || strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../"):
			abs, err := filepath.Abs(src)
			if err != nil {
				return Volume{}, err
			}
			v.Type, v.Source = "bind", abs
		case validVolumeName().MatchString(src):
			v.Type, v.Name = "volume", src
		default:
			return bad(fmt.Sprintf("%q includes invalid characters for a local volume name, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed; a host path must be absolute", src))
		}
		if len(parts) == 3 {
			switch parts[2] {
			case "ro":
				v.ReadOnly = true
			case "rw":
			default:
				return bad(fmt.Sprintf("invalid mode: %s", parts[2]))
			}
		}
	default:
		return bad("too many colons")
	}
	if !filepath.IsAbs(v.Destination) {
		return bad(fmt.Sprintf("invalid mount path: '%s' mount path must be absolute", v.Destination))
	}
	v.Destination = filepath.Clean(v.Destination)
	if v.Destination == "/" {
		return bad("invalid mount path: '/' cannot be a mount point")
	}
	return v, nil
}

// volumes lays the image's VOLUME paths (each an anonymous volume unless a
// -v mounts there) under the run's -v volumes, and names the anonymous ones.
func volumes(given []Volume, imageVolumes map[string]struct{}) ([]Volume, error) {
	var vs []Volume
	seen := map[string]bool{}
	for _, v := range given {
		if seen[v.Destination] {
			return nil, fmt.Errorf("duplicate mount point: %s", v.Destination)
		}
		seen[v.Destination] = true
		vs = append(vs, v)
	}
	var paths []string
	for p := range imageVolumes {
		paths = append(paths, filepath.Clean(p))
	}
	slices.Sort(paths)
	for _, p := range paths {
		if !seen[p] && filepath.IsAbs(p) {
			seen[p] = true
			vs = append(vs, Volume{Type: "volume", Destination: p, Anonymous: true})
		}
	}
	for i := range vs {
		if vs[i].Type == "volume" && vs[i].Name == "" {
			vs[i].Name = NewID()
		}
	}
	return vs, nil
}

// volumeDir is where volume name keeps its files.
func (c *Containers) volumeDir(name string) string {
	return filepath.Join(c.st.Root(), "volumes", name, "_data")
}

// prepareVolumes makes what the container's volumes need: a missing bind
// source directory (as docker makes it), a volume's directory, and, for a
// volume still empty, a copy of what the image has at its mount path (read
// inside rootfs, never through a link out of it). It returns the mounts.
func (c *Containers) prepareVolumes(rec *Record, rootfs string) ([]specs.Mount, error) {
	var mounts []specs.Mount
	for i, v := range rec.Volumes {
		switch v.Type {
		case "bind":
			if err := os.MkdirAll(v.Source, 0o755); err != nil {
				return nil, fmt.Errorf("bind source %s: %w", v.Source, err)
			}
		case "volume":
			v.Source = c.volumeDir(v.Name)
			rec.Volumes[i].Source = v.Source
			if err := os.MkdirAll(filepath.Dir(filepath.Dir(v.Source)), 0o700); err != nil {
				return nil, err
			}
			if err := os.MkdirAll(v.Source, 0o755); err != nil {
				return nil, err
			}
			if err := fillVolume(rootfs, v.Destination, filepath.Dir(v.Source)); err != nil {
				return nil, fmt.Errorf("volume %s: copy what the image has at %s: %w", v.Name, v.Destination, err)
			}
		default:
			return nil, fmt.Errorf("volume of type %q", v.Type)
		}
		opts := []string{"rbind", "rprivate", "rw"}
		if v.ReadOnly {
			opts[2] = "ro"
		}
		mounts = append(mounts, specs.Mount{Type: "bind", Source: v.Source, Destination: v.Destination, Options: opts})
	}
	return mounts, nil
}

// A volume's directory (<store>/volumes/NAME) holds its files in _data
// and, while they are being copied in from an image, the marker .filling,
// made before the first file and removed after the last, under a flock of
// .lock: a marker whose lock nobody holds is a fill that was killed, whose
// half-copied files the next fill (or gc) removes before copying again.
// The marker reaches the disk before the first file, the files before the
// marker's removal, and the removal before the fill returns.
const (
	volumeData    = "_data"
	volumeFilling = ".filling"
	volumeLock    = ".lock"
)

// fillVolume copies what rootfs has at dst into the empty volume whose
// directory is vol (copyImageContent), crash-safe: a fill killed midway is
// redone, from nothing, by the next one.
func fillVolume(rootfs, dst, vol string) error {
	data, marker := filepath.Join(vol, volumeData), filepath.Join(vol, volumeFilling)
	// Filled already (the common case) costs no lock: the marker is made
	// before the first file, so a non-empty volume without one is whole.
	if empty, err := emptyDir(data); err != nil || !empty {
		if _, merr := os.Lstat(marker); err == nil && errors.Is(merr, os.ErrNotExist) {
			return nil
		}
	}
	unlock, err := lockVolume(vol, true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := resetInterrupted(vol); err != nil {
		return err
	}
	if empty, err := emptyDir(data); err != nil || !empty {
		return err // filled meanwhile, or the user's own files
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return err
	}
	// The marker on disk before any file, and the volume's own entries
	// (its directory in volumes/, volumes/ in the store), which no one
	// synced when they were made: a fill whose volume a power loss took is
	// no fill at all, but one whose _data it took while the marker stayed
	// would be taken for whole.
	for _, d := range []string{vol, filepath.Dir(vol), filepath.Dir(filepath.Dir(vol))} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	if afterMarker != nil {
		afterMarker(vol)
	}
	if err := copyImageContent(rootfs, dst, data); err != nil {
		return err
	}
	// Every file of the fill on disk before the marker goes.
	if err := syncFill(data); err != nil {
		return err
	}
	if beforeMarkerRemoved != nil {
		beforeMarkerRemoved(vol)
	}
	if err := os.Remove(marker); err != nil {
		return err
	}
	// The marker's removal on disk before the container writes there: one
	// found again after a power loss would empty the volume of its files.
	return syncDir(vol)
}

// afterMarker, when set (by tests), runs between the sync of a fill's
// marker and its first file.
var afterMarker func(vol string)

// beforeMarkerRemoved, when set (by tests), runs between a fill's sync and
// the removal of its marker.
var beforeMarkerRemoved func(vol string)

// fillSynced, when set (by tests), is told of each path a fill fsyncs
// (op "fsync") or syncs the file system of (op "syncfs").
var fillSynced func(op, path string)

// fillSyncEach is the most files and directories a fill syncs one by one;
// a larger one syncs its file system whole.
const fillSyncEach = 16

// syncFill makes the fill in directory data durable. A small fill (at most
// fillSyncEach files and directories, a VOLUME's few files) is synced
// file by file: syncfs writes back every dirty page of the file system,
// other processes' too (139 ms after another process wrote 200 MB, where
// an fsync of the file and its directory took 0.4 ms). A larger one is
// synced by one syncfs: an fsync a file costs a journal commit each (30-100x
// slower for 3,000 files on ext4).
//
// What is fsynced: every regular file (its data and inode) and every
// directory (its entries and inode), data itself included. What is not: a
// symlink, FIFO, socket or device node, whose inode has no descriptor to
// fsync (an O_PATH one refuses it, a FIFO's or device's open blocks or
// acts, and fsync of them is EINVAL): each is an entry of a directory that
// is fsynced, which makes its name durable, and on a journaling file
// system (ext4, xfs) its inode too, made in the same or an earlier
// transaction than that entry; one that writes inodes apart from their
// entries could lose such an inode's owner or xattrs, not the entry.
func syncFill(data string) error {
	var paths []string
	errMany := errors.New("many")
	err := filepath.WalkDir(data, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		if len(paths) == fillSyncEach {
			return errMany
		}
		paths = append(paths, p)
		return nil
	})
	if errors.Is(err, errMany) {
		if fillSynced != nil {
			fillSynced("syncfs", data)
		}
		return syncFS(data)
	}
	if err != nil {
		return err
	}
	for _, p := range paths {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: p, Err: err}
		}
		err = unix.Fsync(fd)
		unix.Close(fd)
		if err != nil {
			return &os.PathError{Op: "fsync", Path: p, Err: err}
		}
		if fillSynced != nil {
			fillSynced("fsync", p)
		}
	}
	return nil
}

// syncFS flushes the file system that holds path to its disk (syncfs(2)).
func syncFS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: path, Err: err}
	}
	return nil
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	if fillSynced != nil {
		fillSynced("fsync", dir)
	}
	return nil
}

// lockVolume takes the flock of volume directory vol; with wait false, it
// fails with EWOULDBLOCK where another process holds it.
func lockVolume(vol string, wait bool) (func(), error) {
	f, err := os.OpenFile(filepath.Join(vol, volumeLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// resetInterrupted empties the volume at vol if a fill of it was killed
// (its marker is there; the caller holds the lock), leaving it as it was
// before that fill.
func resetInterrupted(vol string) error {
	marker := filepath.Join(vol, volumeFilling)
	if _, err := os.Lstat(marker); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	data := filepath.Join(vol, volumeData)
	ents, err := os.ReadDir(data)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(data, e.Name())); err != nil {
			return err
		}
	}
	return os.Remove(marker)
}

func emptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// InterruptedFills names the volumes of the store at root whose fill from
// an image was killed midway (strata check reports them: the next
// container that mounts one, or ResetInterruptedFills, empties and fills it
// again). A fill under way is not one.
func InterruptedFills(root string) ([]string, error) {
	return interruptedFills(root, false)
}

// ResetInterruptedFills empties the volumes InterruptedFills names, as
// they were before the fill (strata gc), and returns them.
func ResetInterruptedFills(root string) ([]string, error) {
	return interruptedFills(root, true)
}

func interruptedFills(root string, reset bool) ([]string, error) {
	marks, err := filepath.Glob(filepath.Join(root, "volumes", "*", volumeFilling))
	if err != nil {
		return nil, err
	}
	var names []string
	var errs []error
	for _, m := range marks {
		vol := filepath.Dir(m)
		unlock, err := lockVolume(vol, false)
		if errors.Is(err, unix.EWOULDBLOCK) {
			continue // a fill under way
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := os.Lstat(m); err == nil { // not finished meanwhile
			if reset {
				err = resetInterrupted(vol)
			}
			if err == nil {
				names = append(names, filepath.Base(vol))
			}
			errs = append(errs, err)
		}
		unlock()
	}
	return names, errors.Join(errs...)
}

// copyImageContent copies what rootfs holds at dst (resolved inside it)
// into the volume directory vol, if vol is empty, as cp -a would: owners,
// modes, times, extended attributes, hard links, device nodes; vol itself
// takes the attributes of the directory at dst. It is read by descriptor
// from inside the root (Tree), never through a link out of it.
func copyImageContent(rootfs, dst, vol string) error {
	ents, err := os.ReadDir(vol)
	if err != nil || len(ents) > 0 {
		return err
	}
	src, err := OpenTree(rootfs)
	if err != nil {
		return err
	}
	defer src.Close()
	dir := strings.TrimSuffix(dst, "/") + "/." // a link to a directory followed, inside the root
	fd, err := src.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil // nothing there to copy
	}
	if err != nil {
		return err
	}
	unix.Close(fd)
	to, err := OpenTree(vol)
	if err != nil {
		return err
	}
	defer to.Close()
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := src.archive(pw, dir, ".", true)
		pw.CloseWithError(err)
		werr <- err
	}()
	err = to.Extract("/", pr, ExtractOptions{})
	pr.CloseWithError(errors.New("extraction ended"))
	if werr := <-werr; err == nil {
		err = werr
	}
	return err
}

// removeAnonymousVolumes deletes the container's anonymous volumes (rm -v).
func (c *Containers) removeAnonymousVolumes(rec *Record) error {
	var errs []error
	for _, v := range rec.Volumes {
		if v.Type == "volume" && v.Anonymous && validVolumeName().MatchString(v.Name) {
			errs = append(errs, os.RemoveAll(filepath.Dir(c.volumeDir(v.Name))))
		}
	}
	return errors.Join(errs...)
}

// VolumeUsage is a volume of the store and the space its files take.
type VolumeUsage struct {
	Name string
	Dir  string // its files: <store>/volumes/NAME/_data
	// Size is the bytes of the files it holds, a hard-linked file once, as
	// docker's system df counts a volume.
	Size int64
}

// StoreVolumes lists the volumes of the store at root, by name.
func StoreVolumes(root string) ([]VolumeUsage, error) {
	ents, err := os.ReadDir(filepath.Join(root, "volumes"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var vs []VolumeUsage
	for _, e := range ents {
		if !e.IsDir() || !validVolumeName().MatchString(e.Name()) {
			continue
		}
		v := VolumeUsage{Name: e.Name(), Dir: filepath.Join(root, "volumes", e.Name(), "_data")}
		seen := map[[2]uint64]bool{}
		err := filepath.WalkDir(v.Dir, func(p string, d iofs.DirEntry, err error) error {
			if errors.Is(err, os.ErrNotExist) {
				return nil // removed meanwhile
			}
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if seen[key] {
					return nil
				}
				seen[key] = true
			}
			v.Size += fi.Size()
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		vs = append(vs, v)
	}
	return vs, nil
}
