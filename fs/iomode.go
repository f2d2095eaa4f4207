package fs

import (
	"sync"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// Upper passthrough: on a writable mount without the writeback cache, a
// file of the upper dir that holds its own data (no metacopy) is opened
// with FUSE passthrough to the upper file itself, so its reads and writes
// never reach the server: the kernel reads and writes the upper file as
// overlayfs would (fuse_passthrough_read_iter and _write_iter in the
// kernel's fs/fuse/passthrough.c). The backing file is the upper file the
// node's data lives in for good, so whichever handle go-fuse registered it
// from, every later passthrough open of the node reads and writes the same
// file (the kernel reopens it with each open's flags).
//
// The kernel keeps an inode in one io mode at a time (fs/fuse/iomode.c):
// while any file of it is open through the page cache, a passthrough open
// fails with EIO, and the other way round. The server therefore counts,
// per node, the opens it answered each way, from the open until its
// RELEASE (the kernel counts a shorter span, so the server never answers a
// mode the kernel is not in), and opens a node in passthrough only while it
// has no cached opens; a metacopy (its data partly in an object), a file
// whose setuid or setgid bit a write must clear and one on a file system
// the kernel refuses backing files of (upperPassthroughable) are always
// cached. go-fuse hands a node's backing ID to every later handle that
// implements FilePassthroughFder: on a writable mount only ptUpperFile
// does (ptObjectFile exists only on read-only mounts), so a plain
// upperFile or objectFile never gets a backing file.
//
// A mount with upper passthrough does not pass lower files through: the
// object's backing ID would be the one go-fuse hands to the node's next
// passthrough open, and a write handle backed by an object would write
// into the store.

// ioModes counts the opens of each node by io mode.
type ioModes struct {
	mu sync.Mutex
	m  map[*node]*ioCount
}

type ioCount struct{ pt, cached int }

// openMode records an open of n and reports whether it passes through:
// want says the handle could (upper data, no metacopy).
func (s *ioModes) openMode(n *node, want bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*node]*ioCount{}
	}
	c := s.m[n]
	if c == nil {
		c = &ioCount{}
		s.m[n] = c
	}
	// With passthrough opens in place the kernel wants passthrough (an open
	// without it gets EIO), so a further open joins them even where it
	// would not pass through alone (a chmod made the file setuid since; see
	// upperPassthroughable). A metacopy never has them: passthrough needs upper
	// data, and a file never becomes a metacopy again.
	pt := c.cached == 0 && (want || c.pt > 0)
	if pt {
		c.pt++
	} else {
		c.cached++
	}
	return pt
}

// closeMode uncounts a released open of n.
func (s *ioModes) closeMode(n *node, pt bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m[n]
	if c == nil {
		return
	}
	if pt {
		c.pt--
	} else {
		c.cached--
	}
	if c.pt <= 0 && c.cached <= 0 {
		delete(s.m, n)
	}
}

// opens returns how many opens are counted (for tests).
func (s *ioModes) opens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// upperHandle turns an open upper file into the handle an OPEN or CREATE
// replies with: a ptUpperFile where the mount and the node allow
// passthrough, the upperFile itself otherwise.
func (n *node) upperHandle(f *upperFile) gofs.FileHandle {
	u := n.u
	if !u.upperPT.Load() {
		return f
	}
	f.counted = true
	f.pt = u.io.openMode(n, f.metacopy() == nil && u.upperPassthroughable(f.fd))
	if f.pt {
		return &ptUpperFile{f}
	}
	return f
}

// upperPassthroughable reports whether the upper file open as fd may pass
// through: the kernel takes it as a backing file (backing.go), and a write
// to it need not clear its setuid or setgid bit (a setuid file, or a setgid
// and group-executable one); false when an fstat fails. A file whose bits a
// write must clear is not passed through: with FUSE_HANDLE_KILLPRIV_V2 the kernel leaves clearing
// the bits on write to the server (fuse_setattr in fs/fuse/dir.c), which
// sees no WRITE of a passthrough file, and the kernel's own write to the
// backing file runs with the server's CAP_FSETID. A chmod that sets the
// bits on a file open with passthrough leaves it in passthrough until its
// last such handle is released (the kernel allows no other kind of open
// meanwhile); a write through one by a process without CAP_FSETID clears
// them all the same, at the empty SETATTR the kernel sends before it
// (setattrNothing in privs.go).
func (u *union) upperPassthroughable(fd int) bool {
	st, err := fstat(fd)
	if err != nil {
		return false
	}
	if st.Mode&unix.S_ISUID != 0 || st.Mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP {
		return false
	}
	return u.backing.ok(fd, &st)
}

// ptUpperFile is an upper file opened with passthrough.
type ptUpperFile struct{ *upperFile }

var _ = (gofs.FilePassthroughFder)((*ptUpperFile)(nil))

// PassthroughFd gives the kernel the upper file.
func (f *ptUpperFile) PassthroughFd() (int, bool) { return f.fd, true }

// asUpper returns the upper file behind a handle of either kind.
func asUpper(fh gofs.FileHandle) (*upperFile, bool) {
	switch f := fh.(type) {
	case *upperFile:
		return f, true
	case *ptUpperFile:
		return f.upperFile, true
	}
	return nil, false
}

// probeUpperPassthrough reports whether the kernel takes a file of the
// upper dir as a backing file.
func (s *Server) probeUpperPassthrough() bool {
	fd, err := openat(s.u.rootFd, ".", unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		s.log.Warn("strata fs: upper passthrough probe", "err", err)
		return false
	}
	defer unix.Close(fd)
	return s.registerProbe(fd, "the upper dir")
}
