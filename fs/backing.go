package fs

import (
	"log/slog"
	"sync"
	"sync/atomic"

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
type backingDevs struct {
	srv   *fuse.Server
	log   *slog.Logger
	probe atomic.Uint64 // the device of the probe's file, +1 (0: no probe)

	mu   sync.Mutex
	devs map[uint64]bool // other devices: whether the kernel takes their files
}

// probed records that the kernel took fd, a file on the device of st, as
// a backing file of the mount served by srv.
func (b *backingDevs) probed(srv *fuse.Server, log *slog.Logger, st *unix.Stat_t) {
	b.srv, b.log = srv, log
	b.probe.Store(st.Dev + 1)
}

// ok reports whether the kernel takes fd, a regular file whose fstat is st,
// as a backing file.
func (b *backingDevs) ok(fd int, st *unix.Stat_t) bool {
	if b.probe.Load() == st.Dev+1 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok, seen := b.devs[st.Dev]; seen {
		return ok
	}
	if b.srv == nil {
		return false
	}
	id, errno := b.srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	ok := errno == 0
	if ok {
		_ = b.srv.UnregisterBackingFd(id)
	} else {
		b.log.Warn("strata fs: the kernel refuses files of this file system as backing files; they are read through the server", "dev", st.Dev, "errno", errno)
	}
	if b.devs == nil {
		b.devs = map[uint64]bool{}
	}
	b.devs[st.Dev] = ok
	return ok
}
