package container

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Tree is a directory tree reached through a descriptor of its root, for
// strata cp: every path is resolved inside it as if it were "/" (openat2
// RESOLVE_IN_ROOT), and what is read or written is reached by descriptor
// from there, so neither a symlink nor a rename meanwhile leads out.
type Tree struct{ fd int }

// OpenTree opens dir as a Tree.
func OpenTree(dir string) (*Tree, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &Tree{fd: fd}, nil
}

// Close releases the tree's descriptor.
func (t *Tree) Close() error {
	if t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	return err
}

func rel(p string) string {
	r := strings.TrimLeft(path.Clean("/"+p), "/")
	if r == "" {
		return "."
	}
	return r
}

// open opens p inside the tree; flags may hold O_NOFOLLOW for the last
// component.
func (t *Tree) open(p string, flags int) (int, error) {
	r := rel(p)
	if r != "." && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.")) {
		r += "/." // the directory a trailing slash names, a link to it followed
	}
	fd, err := unix.Openat2(t.fd, r, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path.Clean("/" + p), Err: err}
	}
	return fd, nil
}

// PathStat is what strata cp learns of a path before it copies, as
// docker's container path stat.
type PathStat struct {
	Name       string
	Size       int64
	Mode       os.FileMode
	Mtime      time.Time
	LinkTarget string // a symlink's target, resolved inside the tree
}

// Lstat describes p, its parent resolved inside the tree, its last
// component not followed.
func (t *Tree) Lstat(p string) (PathStat, error) {
	fd, err := t.open(p, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return PathStat{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return PathStat{}, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	ps := PathStat{Name: path.Base(path.Clean("/" + p)), Size: st.Size, Mode: fileMode(st.Mode), Mtime: time.Unix(st.Mtim.Unix())}
	if ps.Mode&os.ModeSymlink != 0 {
		if ps.LinkTarget, err = t.Resolve(p); err != nil {
			return PathStat{}, err
		}
	}
	return ps, nil
}

// Resolve returns p with every symlink in it followed inside the tree: the
// path a lookup of p reaches (its missing tail kept as it is).
func (t *Tree) Resolve(p string) (string, error) {
	parts := strings.Split(rel(p), "/")
	resolved := "/"
	links := 0
	for len(parts) > 0 {
		name := parts[0]
		parts = parts[1:]
		switch name {
		case ".", "":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, name)
		target, err := t.readlink(next)
		if err != nil { // not a link, or not there: taken as it is
			resolved = next
			continue
		}
		if links++; links > 255 {
			return "", &os.PathError{Op: "resolve", Path: p, Err: unix.ELOOP}
		}
		if path.IsAbs(target) {
			resolved = "/"
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return resolved, nil
}

func (t *Tree) readlink(p string) (string, error) {
	fd, err := t.open(p, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return readlinkFd(fd)
}

func readlinkFd(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	}
	if m&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// Archive writes p (its last component not followed) to w as a tar stream
// whose top entry is called name, a directory with all it holds, in name
// order; hard links within it stay links. Extended attributes go along
// (PAX SCHILY.xattr records), but for security.selinux, a label of the
// machine the file is on. Sockets are left out, as docker leaves them.
func (t *Tree) Archive(w io.Writer, p, name string) error {
	return t.archive(w, p, name, false)
}

// archive is Archive; exactTimes keeps modification times to the
// nanosecond (else whole seconds, as docker's archives have them).
func (t *Tree) archive(w io.Writer, p, name string, exactTimes bool) error {
	fd, err := t.open(p, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	tw := tar.NewWriter(w)
	a := &archiver{tw: tw, links: map[[2]uint64]string{}, exactTimes: exactTimes}
	if err := a.entry(fd, name); err != nil {
		return err
	}
	return tw.Close()
}

type archiver struct {
	tw         *tar.Writer
	links      map[[2]uint64]string // the first name of each inode with links
	exactTimes bool
}

func (a *archiver) entry(fd int, name string) error {
	tw, links := a.tw, a.links
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	hdr := &tar.Header{
		Name: name, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		// Whole seconds, as docker's archives: no PAX record per entry.
		ModTime: time.Unix(st.Mtim.Sec, 0), Format: tar.FormatPAX,
	}
	if a.exactTimes {
		hdr.ModTime = time.Unix(st.Mtim.Unix())
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		// A symlink's own too (trusted.*, security.*), as cp -a and GNU
		// tar keep them: /proc/self/fd of its O_PATH descriptor is the link.
		x, err := readXattrs(fd)
		if err != nil {
			return &os.PathError{Op: "listxattr", Path: name, Err: err}
		}
		hdr.PAXRecords = x
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := links[key]; ok && st.Nlink > 1 {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return tw.WriteHeader(hdr)
		}
		links[key] = name
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		f, err := reopen(fd, unix.O_RDONLY)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, f, st.Size); err != nil {
			return fmt.Errorf("%s: %w (changed while copied?)", name, err)
		}
		return nil
	case unix.S_IFLNK:
		target, err := readlinkFd(fd)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: name, Err: err}
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		return tw.WriteHeader(hdr)
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		return tw.WriteHeader(hdr)
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
		return tw.WriteHeader(hdr)
	case unix.S_IFDIR:
	default:
		return nil // a socket
	}
	hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	d, err := reopen(fd, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return &os.PathError{Op: "readdir", Path: name, Err: err}
	}
	slices.Sort(names)
	for _, n := range names {
		cfd, err := unix.Openat(int(d.Fd()), n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // removed meanwhile
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: name + "/" + n, Err: err}
		}
		err = a.entry(cfd, name+"/"+n)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// reopen opens the object an O_PATH descriptor names, not whatever its
// name leads to now.
func reopen(fd, flags int) (*os.File, error) {
	p := fmt.Sprintf("/proc/self/fd/%d", fd)
	nfd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(nfd), p), nil
}

// Owner is a uid and gid.
type Owner struct{ UID, GID int }

// ExtractOptions tune Extract.
type ExtractOptions struct {
	// Owner, if set, owns every entry; else the archive's owners do, unless
	// NoChown.
	Owner *Owner
	// NoChown leaves entries owned by the extracting user.
	NoChown bool
	// HostSafe drops setuid and setgid bits, security.* attributes (file
	// capabilities, LSM labels) and trusted.* ones, and leaves device
	// nodes out (each reported to Skipped): what a copy out of a container
	// onto the host does unless asked to keep everything.
	HostSafe bool
	// Skipped is told of what was left out: a device node (HostSafe), or an
	// extended attribute the destination does not take (ENOTSUP, EPERM).
	Skipped func(name, what string)
}

// Extract unpacks the tar stream r into dir (an existing directory inside
// the tree, symlinks followed inside it) as docker cp does: a missing
// parent is made, an existing directory is merged into, anything else in
// the way is replaced, but a directory never replaces a non-directory nor
// the other way round. No entry lands outside dir.
func (t *Tree) Extract(dir string, r io.Reader, o ExtractOptions) error {
	base, err := t.Resolve(dir)
	if err != nil {
		return err
	}
	dfd, err := t.open(base, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	unix.Close(dfd)
	type dirTime struct {
		p string
		t time.Time
	}
	var dirs []dirTime
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		name, err := entryPath(hdr.Name)
		if err != nil {
			return err
		}
		target := path.Join(base, name)
		if o.HostSafe && (hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock) {
			if o.Skipped != nil {
				o.Skipped(hdr.Name, "device node left out")
			}
			continue
		}
		if err := t.extractEntry(tr, hdr, base, target, o); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{target, hdr.ModTime})
		}
	}
	// A directory's time last: what was made in it changed it.
	for _, d := range slices.Backward(dirs) {
		fd, err := t.open(d.p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		err = setTimes(fd, d.t)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// entryPath is an archive entry's name made relative; one that climbs out
// is refused.
func entryPath(name string) (string, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("archive entry %q: %w", name, unix.EINVAL)
	}
	return p, nil
}

func (t *Tree) extractEntry(tr *tar.Reader, hdr *tar.Header, base, target string, o ExtractOptions) error {
	if target == base && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("cannot overwrite directory %q with non-directory %q", target, hdr.Name)
	}
	parent, leaf := path.Dir(target), path.Base(target)
	if target == "/" {
		parent, leaf = "/", "."
	}
	if err := t.mkdirAll(parent); err != nil {
		return err
	}
	pfd, err := t.open(parent, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	exists := leaf == "." || unix.Fstatat(pfd, leaf, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	if leaf == "." {
		st.Mode = unix.S_IFDIR
	}
	isDir := exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	switch {
	case isDir && hdr.Typeflag != tar.TypeDir:
		return fmt.Errorf("cannot overwrite directory %q with non-directory %q", target, hdr.Name)
	case exists && !isDir && hdr.Typeflag == tar.TypeDir:
		return fmt.Errorf("cannot overwrite non-directory %q with directory %q", target, hdr.Name)
	case exists && !isDir:
		if err := unix.Unlinkat(pfd, leaf, 0); err != nil {
			return &os.PathError{Op: "remove", Path: target, Err: err}
		}
	}
	mode := uint32(hdr.Mode & 0o7777)
	if o.HostSafe {
		mode &^= unix.S_ISUID | unix.S_ISGID
	}
	fail := func(op string, err error) error { return &os.PathError{Op: op, Path: target, Err: err} }
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		fd, err := unix.Openat(pfd, leaf, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fail("create", err)
		}
		f := os.NewFile(uintptr(fd), target)
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fail("write", err)
		}
	case tar.TypeDir:
		if !isDir {
			if err := unix.Mkdirat(pfd, leaf, 0o700); err != nil {
				return fail("mkdir", err)
			}
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, leaf); err != nil {
			return fail("symlink", err)
		}
	case tar.TypeLink:
		lname, err := entryPath(hdr.Linkname)
		if err != nil {
			return err
		}
		old := path.Join(base, lname)
		ofd, err := t.open(path.Dir(old), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		err = unix.Linkat(ofd, path.Base(old), pfd, leaf, 0)
		unix.Close(ofd)
		if err != nil {
			return fail("link", err)
		}
		return nil // the target's metadata is the link's
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(pfd, leaf, kind|0o600, int(dev)); err != nil {
			return fail("mknod", err)
		}
	default:
		return fmt.Errorf("archive entry %q: type %q: %w", hdr.Name, hdr.Typeflag, unix.EINVAL)
	}
	// What was made, by descriptor: a name swapped meanwhile is not followed.
	fd, err := unix.Openat(pfd, leaf, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("open", err)
	}
	defer unix.Close(fd)
	if !o.NoChown {
		uid, gid := hdr.Uid, hdr.Gid
		if o.Owner != nil {
			uid, gid = o.Owner.UID, o.Owner.GID
		}
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail("chown", err)
		}
	}
	if hdr.Typeflag == tar.TypeSymlink {
		// Its own attributes (user.* ones cannot be set on a link: the
		// kernel refuses them, reported to o.Skipped), then its times.
		if err := writeXattrs(fd, hdr, o); err != nil {
			return fail("setxattr", err)
		}
		ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		if err := unix.UtimesNanoAt(pfd, leaf, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail("chtimes", err)
		}
		return nil
	}
	// chmod after chown, which clears setuid bits; attributes after both
	// (chown clears security.capability).
	if err := unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode); err != nil {
		return fail("chmod", err)
	}
	if err := writeXattrs(fd, hdr, o); err != nil {
		return fail("setxattr", err)
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil // its time is set once all it holds is in
	}
	return setTimes(fd, hdr.ModTime)
}

// setTimes sets the access and modification times of what O_PATH
// descriptor fd names.
func setTimes(fd int, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	p := fmt.Sprintf("/proc/self/fd/%d", fd)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0); err != nil {
		return &os.PathError{Op: "chtimes", Path: p, Err: err}
	}
	return nil
}

// mkdirAll makes dir and its missing parents inside the tree (0755, as
// docker makes a copy's missing parents).
func (t *Tree) mkdirAll(dir string) error {
	if fd, err := t.open(dir, unix.O_PATH|unix.O_DIRECTORY); err == nil {
		unix.Close(fd)
		return nil
	}
	cur := "/"
	for _, p := range strings.Split(rel(dir), "/") {
		if p == "." {
			continue
		}
		pfd, err := t.open(cur, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(pfd, p, 0o755)
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "mkdir", Path: path.Join(cur, p), Err: err}
		}
		cur = path.Join(cur, p)
	}
	return nil
}
