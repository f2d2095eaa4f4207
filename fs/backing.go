package fs

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Backing files: go-fuse registers a node's backing file at the first
// passthrough open of it (addBackingID in its fs/bridge.go), and the first
// registration the kernel refuses turns passthrough off for the whole
// mount, for good (rawBridge.disableBackingFiles). The kernel refuses a
// backing file (fuse_backing_open in fs/fuse/backing.c) for the server's
// missing capability, which the mount's probe finds, or for the file's
// file system: one stacked as deep as the connection's stacking depth, or
// not a regular file. So before a handle offers a descriptor for
// passthrough, the server checks that its file system is one the kernel
// took a file of: the probe's, else one it asks the kernel about once, with
// a registration of its own. A file the kernel would refuse is read and
// written through the server, and the rest of the mount keeps passthrough.
// An upper dir is one file system (paths are resolved with
// RESOLVE_NO_XDEV); a read-only mount's objects come from Options.Objects,
// which may name files anywhere.
//
// A file system is known by its device, its statfs f_fsid and magic, not
// by its device alone: an unmounted file system's device number is given
// to the next one mounted (anonymous devices: tmpfs, overlayfs, FUSE). Only
// the kernel's refusals for the file system (refusedForGood) are kept; a
// transient one (ENOMEM, say) serves that open through the server and the
// next open asks again.
type backingDevs struct {
	srv   *fuse.Server
	log   *slog.Logger
	probe atomic.Pointer[fsKey] // the probe's file system (nil: no probe)

	mu   sync.Mutex
	devs map[fsKey]bool // other file systems: whether the kernel takes their files
}

// fsKey names a mounted file system.
type fsKey struct {
	dev   uint64
	fsid  [2]int32
	magic int64
}

func keyOf(fd int, st *unix.Stat_t) (fsKey, error) {
	var sf unix.Statfs_t
	if err := unix.Fstatfs(fd, &sf); err != nil {
		return fsKey{}, err
	}
	return fsKey{dev: st.Dev, fsid: sf.Fsid.Val, magic: sf.Type}, nil
}

// probed records that the kernel took fd, a file whose fstat is st, as a
// backing file of the mount served by srv.
func (b *backingDevs) probed(srv *fuse.Server, log *slog.Logger, fd int, st *unix.Stat_t) error {
	k, err := keyOf(fd, st)
	if err != nil {
		return err
	}
	b.srv, b.log = srv, log
	b.probe.Store(&k)
	return nil
}

// refusedForGood reports whether the kernel's refusal of a backing file
// (fuse_backing_open in fs/fuse/backing.c) holds for every file of its
// file system: stacked too deep (ELOOP), not a file it takes (EINVAL), no
// passthrough at all (EPERM: the capability, ENOTTY and EOPNOTSUPP: the
// kernel's support). Anything else (ENOMEM, ENOSPC of its ID table, EBADF)
// may pass.
func refusedForGood(errno syscall.Errno) bool {
	switch errno {
	case syscall.ELOOP, syscall.EINVAL, syscall.EPERM, syscall.ENOTTY, syscall.EOPNOTSUPP, syscall.ENOSYS:
		return true
	}
	return false
}

// ok reports whether the kernel takes fd, a regular file whose fstat is st,
// as a backing file.
func (b *backingDevs) ok(fd int, st *unix.Stat_t) bool {
	k, err := keyOf(fd, st)
	if err != nil {
		return false
	}
	if p := b.probe.Load(); p != nil && *p == k {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok, seen := b.devs[k]; seen {
		return ok
	}
	if b.srv == nil {
		return false
	}
	id, errno := b.srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	if errno == 0 {
		if errno := b.srv.UnregisterBackingFd(id); errno != 0 {
			b.log.Warn("strata fs: unregistering a probe's backing file", "dev", st.Dev, "errno", errno)
		}
	} else if !refusedForGood(errno) {
		b.log.Warn("strata fs: the kernel refused a backing file for now; read through the server", "dev", st.Dev, "errno", errno)
		return false
	} else {
		b.log.Warn("strata fs: the kernel refuses files of this file system as backing files; they are read through the server", "dev", st.Dev, "errno", errno)
	}
	if b.devs == nil {
		b.devs = map[fsKey]bool{}
	}
	b.devs[k] = errno == 0
	return errno == 0
}
