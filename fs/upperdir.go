package fs

import (
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The upper dir is reached through descriptors, never through absolute
// paths. A merged path may be as long as the kernel allows below the
// mountpoint, and the upper dir's own path in front of it would push it past
// PATH_MAX (kernel overlayfs, which works on dentries, has no such limit);
// and a walk by descriptor can refuse every symlink, so nothing in the upper
// dir leads out of it.
//
// A directory is opened O_PATH from the upper dir's root descriptor with
// openat2 and RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS (one call for paths
// shorter than PATH_MAX, one per piece for longer ones; one openat with
// O_NOFOLLOW per name where the kernel has no openat2). Names in it are then
// made, looked up, removed and renamed with the *at calls. Operations on one
// entry (owner, mode, times, xattrs) go through an O_PATH descriptor of the
// entry itself, with /proc/self/fd/N for the calls that take no descriptor:
// following that link reaches the entry, a symlink included, and nothing
// beyond it.
//
// Directories that requests read (lookups, listings, attributes) are kept
// open in a cache of at most dirCacheSize descriptors, keyed by merged
// path, so that the lookups of a listing do not walk the path again each.
// A path names the same directory for as long as nobody changes the
// namespace, and every change holds nsMu exclusively: releasing it empties
// the cache (unlockNS), and no reader can hold a cached descriptor then.
// Everything else is open only for the operation in progress.

// nameMax is the longest name a directory entry may have (NAME_MAX).
const nameMax = 255

// dirPathFlags open a directory for walking only, never through a symlink.
const dirPathFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// resolveBeneath keeps a walk inside the directory it starts from, on the
// same mount, through no symlink of any kind.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openDirBeneath opens directory p below directory dirfd, O_PATH. p is a
// merged path ("/"-separated names, no "." or ".."), not empty.
func openDirBeneath(dirfd int, p string) (int, error) {
	return openBeneath(dirfd, p, dirPathFlags)
}

// openBeneath opens p (a merged path, not empty) below directory dirfd
// with flags, through no symlink: a final symlink fails with ELOOP, or is
// opened itself with O_PATH. Paths longer than PATH_MAX are opened in
// pieces.
func openBeneath(dirfd int, p string, flags int) (int, error) {
	fd := dirfd
	for {
		piece, rest, fl := p, "", flags
		if len(p) >= unix.PathMax {
			i := strings.LastIndexByte(p[:unix.PathMax], '/')
			if i <= 0 {
				if fd != dirfd {
					unix.Close(fd)
				}
				return -1, unix.ENAMETOOLONG
			}
			piece, rest, fl = p[:i], p[i+1:], dirPathFlags
		}
		nfd, err := openPiece(fd, piece, fl|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if fd != dirfd {
			unix.Close(fd)
		}
		if err != nil || rest == "" {
			return nfd, err
		}
		fd, p = nfd, rest
	}
}

// openPiece opens p (shorter than PATH_MAX) below dirfd with flags.
func openPiece(dirfd int, p string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags), Resolve: resolveBeneath}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(dirfd, p, &how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN && try < 8:
			continue // a rename elsewhere on the file system raced with the walk
		case err == unix.ENOSYS || err == unix.EAGAIN:
			return openByName(dirfd, p, flags)
		}
		return -1, err
	}
}

// openByName walks p one name at a time, for kernels without openat2.
func openByName(dirfd int, p string, flags int) (int, error) {
	fd := dirfd
	names := strings.Split(p, "/")
	for i, name := range names {
		fl := dirPathFlags
		if i == len(names)-1 {
			fl = flags
		}
		nfd, err := openat(fd, name, fl, 0)
		if fd != dirfd {
			unix.Close(fd)
		}
		if err != nil {
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}

// splitPath splits merged path p into its directory and its last name.
// The upper dir's root is "." in itself.
func splitPath(p string) (string, string) {
	if p == "" {
		return "", "."
	}
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// procPath names the file open as fd (an O_PATH descriptor too) for the
// calls that take no descriptor.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// openat is openat(2) with EINTR retried.
func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// fstatat lstats name in directory dirfd.
func fstatat(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return st, err
		}
	}
}

// pinAt opens name in directory dirfd O_PATH, not following a symlink: a
// descriptor of the entry for the operations on it.
func pinAt(dirfd int, name string) (int, error) {
	return openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// openReadDir opens directory name in dirfd for reading its entries.
func openReadDir(dirfd int, name string) (int, error) {
	return openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// dirCacheSize bounds the directory descriptors a mount keeps open.
const dirCacheSize = 32

// dirCache holds descriptors of upper directories by merged path, valid
// until the namespace next changes.
type dirCache struct {
	mu  sync.Mutex
	fds map[string]int
	set map[int]bool // the descriptors in fds
}

// lockNS takes nsMu for a change of the upper dir's namespace.
func (u *union) lockNS() { u.nsMu.Lock() }

// unlockNS releases nsMu after a change, emptying the directory cache: a
// path may name another directory now.
func (u *union) unlockNS() {
	c := &u.dirs
	c.mu.Lock()
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	clear(c.fds)
	clear(c.set)
	c.mu.Unlock()
	u.nsMu.Unlock()
}

// openDir opens the upper directory at merged path p, O_PATH, or finds it
// in the cache. The root is the mount's own descriptor. Release every
// result with closeDir, before nsMu. Callers hold nsMu (which keeps the
// root descriptor and the cache's open).
func (u *union) openDir(p string) (int, error) {
	if u.rootFd < 0 {
		return -1, unix.EROFS
	}
	if p == "" {
		return u.rootFd, nil
	}
	c := &u.dirs
	c.mu.Lock()
	fd, ok := c.fds[p]
	c.mu.Unlock()
	if ok {
		return fd, nil
	}
	fd, err := openDirBeneath(u.rootFd, p)
	if err != nil {
		return -1, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.fds[p]; ok { // opened meanwhile by another reader
		unix.Close(fd)
		return old, nil
	}
	if c.fds == nil {
		c.fds, c.set = map[string]int{}, map[int]bool{}
	}
	if len(c.fds) < dirCacheSize {
		c.fds[p] = fd
		c.set[fd] = true
	}
	return fd, nil
}

// closeDir releases a descriptor from openDir or at.
func (u *union) closeDir(fd int) {
	if fd < 0 || fd == u.rootFd {
		return
	}
	u.dirs.mu.Lock()
	cached := u.dirs.set[fd]
	u.dirs.mu.Unlock()
	if !cached {
		unix.Close(fd)
	}
}

// at opens the directory of merged path p and returns it with p's last name
// ("." for the root). Callers hold nsMu and release it with closeDir.
func (u *union) at(p string) (int, string, error) {
	dir, name := splitPath(p)
	fd, err := u.openDir(dir)
	return fd, name, err
}

// closeRoot closes the root descriptor once no operation can use it.
func (u *union) closeRoot() {
	u.lockNS()
	defer u.unlockNS()
	if u.rootFd >= 0 {
		unix.Close(u.rootFd)
		u.rootFd = -1
	}
}

// readlinkAt reads symlink name in dirfd.
func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
