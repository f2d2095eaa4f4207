package fs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// A SETATTR that sets nothing is one of two requests, which the kernel
// sends alike. file_remove_privs (fs/inode.c) asks fuse_setattr to kill
// setuid and setgid before a write, and with FUSE_HANDLE_KILLPRIV_V2
// fuse_setattr drops the kill flags and sends what is left, nothing; it
// does so in the writer's context before every write that must clear them,
// a passthrough write too (backing_file_write_iter in fs/backing-file.c),
// and that is the server's only word of a passthrough write, which the
// kernel then makes with the server's credentials, which keep the bits.
// It sends one also for the security.capability of a writer with
// CAP_FSETID, which it removes itself (setattr_prepare), and which must
// keep the bits. And chown(p, -1, -1) sends the same request, with the
// mode change dropped likewise: ctime alone with the writeback cache
// (trust_local_cmtime), nothing without. On a local file system that
// chown clears the bits, and fails with EPERM for a user who does not own
// the file (setattr_prepare checks the mode change the kill makes).
//
// So such a SETATTR kills the bits when the caller may: it owns the file
// (or has CAP_FOWNER), or, for an empty one, a writable handle is open on
// the node (file_remove_privs comes from a writer) and the caller lacks
// CAP_FSETID. A non-owner's otherwise gets EPERM. Nothing else changes:
// no copy-up. Without the writeback cache, root's chown(p, -1, -1) keeps
// the bits (ext4 clears them): it cannot be told from a write's.

// Capability bits of /proc/<pid>/status's CapEff.
const (
	capFowner = 1 << 3
	capFsetid = 1 << 4
)

// setsNothing reports whether in changes no attribute: the kill request
// of a write, or chown(p, -1, -1).
func setsNothing(in *fuse.SetAttrIn) bool {
	return in.Valid&^(fuse.FATTR_FH|fuse.FATTR_LOCKOWNER|fuse.FATTR_CTIME) == 0
}

// suidgidBits returns the bits of mode a write or chown clears: setuid,
// and setgid of a group-executable file; none of a directory.
func suidgidBits(mode uint32) uint32 {
	if mode&unix.S_IFMT == unix.S_IFDIR {
		return 0
	}
	kill := mode & unix.S_ISUID
	if mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP {
		kill |= unix.S_ISGID
	}
	return kill
}

// setattrNothing answers a SETATTR that sets nothing (setsNothing).
func (n *node) setattrNothing(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.Getattr(ctx, f, out); errno != 0 {
		return errno
	}
	kill := suidgidBits(out.Mode)
	if kill == 0 {
		return 0
	}
	var caller fuse.Caller
	if c, ok := fuse.FromContext(ctx); ok {
		caller = *c
	}
	caps := callerCaps(caller.Pid)
	write := in.Valid&fuse.FATTR_CTIME == 0 // maybe a write's
	owner := caller.Uid == out.Uid || caps&capFowner != 0
	switch {
	case write && caps&capFsetid != 0:
		return 0
	case owner, write && n.hasWriter():
	default:
		return syscall.EPERM
	}
	kin := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: in.InHeader, Valid: fuse.FATTR_MODE, Mode: out.Mode & 0o7777 &^ kill}}
	if fh, ok := in.GetFh(); ok {
		kin.Valid |= fuse.FATTR_FH
		kin.Fh = fh
	}
	return n.Setattr(ctx, f, &kin, out)
}

// callerCaps returns the effective capabilities of process pid, none when
// it cannot be read (a pid of another namespace, a process gone).
func callerCaps(pid uint32) uint64 {
	if pid == 0 {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			c, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0
			}
			return c
		}
	}
	return 0
}

// hasWriter reports whether a writable handle of n's upper file is open.
func (n *node) hasWriter() bool {
	s := &n.u.state
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if fs := s.files[n]; fs != nil {
		for _, f := range fs.open {
			if f.write {
				return true
			}
		}
	}
	return false
}
