package fs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
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
// So such a SETATTR keeps the bits for a writer with CAP_FSETID that has
// just removed the file's security.capability, and else kills them when
// the caller may: it owns the file (or has CAP_FOWNER), or, for an empty
// one, it holds a writable descriptor of the file itself (the kernel sends
// a write's only for a writer it judged unprivileged). Capabilities count
// only in the server's user namespace. A non-owner's otherwise gets EPERM.
// Nothing else changes: no copy-up. Without the writeback cache, root's
// chown(p, -1, -1) of a file with a security.capability keeps the bits
// (ext4 clears them): it cannot be told from a write's.

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
	switch {
	case write && caps&capFsetid != 0 && n.u.capDroppedBy(n, caller.Pid):
		return 0 // a privileged writer's, for security.capability alone
	case caller.Uid == out.Uid || caps&capFowner != 0:
	case write && n.u.callerWrites(caller.Pid, out.Ino, n):
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

// callerCaps returns the effective capabilities of process (or thread)
// pid, none when it cannot be read (a pid of another namespace, a process
// gone) or when it is of another user namespace than the server's: there
// they are over its own namespace, not over the files (unshare -r gives
// any user a full CapEff).
func callerCaps(pid uint32) uint64 {
	if pid == 0 || !sameUserNS(pid) {
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

// ownUserNS is the server's user namespace: dev and inode of nsfs.
var ownUserNS = sync.OnceValue(func() [2]uint64 {
	var st unix.Stat_t
	if unix.Stat("/proc/self/ns/user", &st) != nil {
		return [2]uint64{}
	}
	return [2]uint64{st.Dev, st.Ino}
})

// sameUserNS reports whether process pid is in the server's user
// namespace; false when either cannot be told.
func sameUserNS(pid uint32) bool {
	own := ownUserNS()
	var st unix.Stat_t
	if own == ([2]uint64{}) || unix.Stat(fmt.Sprintf("/proc/%d/ns/user", pid), &st) != nil {
		return false
	}
	return [2]uint64{st.Dev, st.Ino} == own
}

const capXattr = "security.capability"

// capDropped notes that the caller of ctx removed n's security.capability:
// the kernel does so itself before it sends the SETATTR that sets nothing
// for a writer with CAP_FSETID (notify_change's ATTR_KILL_PRIV), and that
// request must keep the bits.
func (u *union) capDropped(ctx context.Context, n *node) {
	c, ok := fuse.FromContext(ctx)
	if !ok || c.Pid == 0 {
		return
	}
	u.capMu.Lock()
	defer u.capMu.Unlock()
	if u.capDrops == nil || len(u.capDrops) >= 64 {
		// removexattr(2) alone leaves its entry: keep the map small.
		u.capDrops = map[*node]uint32{}
	}
	u.capDrops[n] = c.Pid
}

// capDroppedBy reports whether pid was the last to remove n's
// security.capability, and forgets it.
func (u *union) capDroppedBy(n *node, pid uint32) bool {
	u.capMu.Lock()
	defer u.capMu.Unlock()
	by, ok := u.capDrops[n]
	delete(u.capDrops, n)
	return ok && by == pid
}

// callerWrites reports whether process (or thread) pid holds a writable
// descriptor of the mount's inode ino (node n) in its own table: its
// /proc fdinfo names the inode, the flags and the mount, which must be
// one of this file system (a bind mount or a container's copy has its own
// mount id). A caller the server cannot see (pid 0: another pid
// namespace) counts as one while any writable handle of n is open.
func (u *union) callerWrites(pid uint32, ino uint64, n *node) bool {
	if pid == 0 {
		return n.hasWriter()
	}
	dev := u.dev.Load()
	if dev == 0 {
		return false
	}
	dir := fmt.Sprintf("/proc/%d/", pid)
	ents, err := os.ReadDir(dir + "fdinfo")
	if err != nil {
		return false
	}
	var mounts map[uint64]bool
	for _, e := range ents {
		b, err := os.ReadFile(dir + "fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		flags, mnt, fino, ok := parseFdinfo(string(b))
		if !ok || fino != ino || flags&unix.O_PATH != 0 || flags&unix.O_ACCMODE == unix.O_RDONLY {
			continue
		}
		if mounts == nil {
			mounts = mountsOf(dir+"mountinfo", dev)
		}
		if mounts[mnt] {
			return true
		}
	}
	return false
}

// parseFdinfo returns the flags, mnt_id and ino of a /proc fdinfo file.
func parseFdinfo(s string) (flags, mnt, ino uint64, ok bool) {
	var seen int
	for line := range strings.Lines(s) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		v = strings.TrimSpace(v)
		var err error
		switch k {
		case "flags":
			flags, err = strconv.ParseUint(v, 8, 64)
		case "mnt_id":
			mnt, err = strconv.ParseUint(v, 10, 64)
		case "ino":
			ino, err = strconv.ParseUint(v, 10, 64)
		default:
			continue
		}
		if err != nil {
			return 0, 0, 0, false
		}
		seen++
	}
	return flags, mnt, ino, seen == 3
}

// mountsOf returns the ids of the mounts of device dev in a mountinfo file.
func mountsOf(mountinfo string, dev uint64) map[uint64]bool {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return nil
	}
	want := fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	ids := map[uint64]bool{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 3 || f[2] != want {
			continue
		}
		if id, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			ids[id] = true
		}
	}
	return ids
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
