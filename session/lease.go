package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// Find returns the lease of the mount named by arg: its mountpoint, or its
// ID or a unique prefix of it.
func Find(st *layerstore.Store, arg string) (*layerstore.MountRecord, error) {
	recs, err := st.Mounts()
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(arg); err == nil {
		for i := range recs {
			if recs[i].Dir == abs {
				return &recs[i], nil
			}
		}
	}
	var found *layerstore.MountRecord
	for i := range recs {
		if strings.HasPrefix(recs[i].ID, arg) {
			if found != nil {
				return nil, fmt.Errorf("mount %q: %w", arg, layerstore.ErrAmbiguous)
			}
			found = &recs[i]
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no strata mount at %s: %w", arg, layerstore.ErrNotFound)
	}
	return found, nil
}

// lease returns the lease of mount id (layerstore.ErrNotFound when there
// is none).
func lease(st *layerstore.Store, id string) (*layerstore.MountRecord, error) {
	return st.Mount(id)
}

// Status is what a lease and the mount table say about a mount.
type Status string

const (
	Running  Status = "running"  // the server serves the mount
	Starting Status = "starting" // the server runs, nothing is mounted (yet)
	Stale    Status = "stale"    // the server is gone, the mountpoint is still mounted
	Dead     Status = "dead"     // the server is gone, nothing is mounted
	Stopped  Status = "stopped"  // kept: no server, the top layer waits for Resume
)

// StatusOf says what state mount m is in, given the mount table mi.
func StatusOf(m *layerstore.MountRecord, mi []MountInfo) Status {
	_, mounted := Mounted(mi, m.Dir)
	running := m.Running()
	switch {
	case running && mounted:
		return Running
	case running:
		return Starting
	case mounted:
		return Stale
	case m.Keep:
		return Stopped
	}
	return Dead
}

// UnmountOptions configure Unmount.
type UnmountOptions struct {
	// Lazy detaches the mount even while it is in use and returns at once;
	// its server cleans up when the last user is gone. Default: a mount in
	// use is refused (EBUSY inside), and Unmount returns only once the top
	// layer is gone.
	Lazy bool
}

// Unmount ends the mount named by arg (its mountpoint, or its ID) from any
// process: it unmounts the mountpoint and waits until the server has
// deleted the top layer and dropped the lease (or, for a kept mount, marked
// it stopped), so that no space is reported free before it is. A mount whose
// server is gone is detached and cleaned up here. A strata mountpoint that
// has no lease is unmounted and nothing more.
func Unmount(ctx context.Context, st *layerstore.Store, arg string, o UnmountOptions) error {
	rec, err := Find(st, arg)
	if err != nil && !errors.Is(err, layerstore.ErrNotFound) {
		return err
	}
	dir, _ := filepath.Abs(arg) // no stat: a stale mount answers ENOTCONN
	if rec != nil {
		dir = rec.Dir
	}
	mi, err := ReadMountinfo()
	if err != nil {
		return err
	}
	fstype, mounted := Mounted(mi, dir)
	switch {
	case rec == nil && !mounted:
		return fmt.Errorf("%s: not a strata mount: %w", arg, layerstore.ErrNotFound)
	case rec == nil && !strings.HasPrefix(fstype, "fuse.strata"):
		return fmt.Errorf("%s: a %s mount, not strata's: %w", dir, fstype, layerstore.ErrInvalid)
	}
	if mounted {
		flags := 0
		if o.Lazy {
			flags = unix.MNT_DETACH
		}
		if err := unix.Unmount(dir, flags); err != nil && !errors.Is(err, unix.EINVAL) {
			if errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("%s: the mount is busy (open files, or a working directory in it); close them, or detach it with --lazy: %w", dir, err)
			}
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	if rec == nil {
		return nil // a strata mount without a lease: nothing more to clean
	}
	if rec.Running() {
		if o.Lazy {
			return nil // the server cleans up when the last user is gone
		}
		if err := waitServer(ctx, st, rec); err != nil {
			return fmt.Errorf("%s: unmounted, but server %d has not cleaned up: %w", dir, rec.PID, err)
		}
	}
	if err := Reap(st, rec.ID); err != nil {
		return err
	}
	if rec.Running() {
		return nil // it deleted the directory (waitServer saw it go)
	}
	// A server that died between its deletion of the lease and of the
	// directory left the directory behind, garbage now: ours to take. A
	// kept mount's directory, which its lease still names, stays.
	if err := st.RemoveMountDir(rec.ID); err != nil && !errors.Is(err, layerstore.ErrInUse) {
		return fmt.Errorf("%s: the top layer its dead server left: %w", dir, err)
	}
	return nil
}

// waitServer waits until the server of rec is done with it: the process is
// gone, or the lease and then the top layer are (RemoveMount), or the lease names
// no server any more (a kept mount, stopped). It sleeps on a pidfd of the
// server, which wakes it when the server exits, and on an inotify watch of
// the mount's own directory, which wakes it when that directory goes (a
// server that serves other mounts goes on), and reads the lease at
// growing intervals meanwhile, up to a second apart. Each read takes the
// store's shared lock: many umounts at once that each read it on every
// wake (a watch of all of mounts/ woke them all at each deletion) kept
// the servers' deletions, which need it exclusive, from ever getting it.
func waitServer(ctx context.Context, st *layerstore.Store, rec *layerstore.MountRecord) error {
	mdir := st.MountDir(rec.ID)
	var fds []unix.PollFd
	watch := -1 // the inotify descriptor's index in fds
	if fd, err := unix.PidfdOpen(rec.PID, 0); err == nil {
		defer unix.Close(fd)
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}) // Running, checked after the open, rules out a reused pid
	}
	if fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err == nil {
		defer unix.Close(fd)
		// Moved (RemoveMount takes it aside first) or deleted; the watch
		// then goes (IN_IGNORED), and the poll sees the descriptor
		// readable from then on: the directory is looked at each wake.
		if _, err := unix.InotifyAddWatch(fd, mdir, unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_ONLYDIR); err == nil {
			watch = len(fds)
			fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		}
	}
	var events [4096]byte
	var leaseGone time.Time
	wait := time.Millisecond // till the next read of the lease
	next := time.Now()
	for rec.Running() {
		_, serr := os.Lstat(mdir)
		if gone := errors.Is(serr, os.ErrNotExist); gone || !time.Now().Before(next) {
			now, err := lease(st, rec.ID)
			switch {
			case errors.Is(err, layerstore.ErrNotFound):
				// The lease is gone, and the server deletes the
				// directory next: done when it is gone. One that is
				// still there a second later is garbage, ours to take
				// (RemoveMountDir decides so in a transaction), or we
				// would wait for good on a server whose deletion of it
				// failed.
				if gone {
					return nil
				}
				if leaseGone.IsZero() {
					leaseGone = time.Now()
				} else if time.Since(leaseGone) > time.Second {
					return st.RemoveMountDir(rec.ID)
				}
			case err != nil:
				return err
			case now.PID != rec.PID || now.PIDStart != rec.PIDStart:
				return nil
			}
			wait = min(2*wait, time.Second)
			next = time.Now().Add(wait)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		sleep := max(time.Until(next), time.Millisecond)
		if len(fds) > 0 {
			_, err := unix.Poll(fds, int((sleep+time.Millisecond-1)/time.Millisecond))
			if err != nil && !errors.Is(err, unix.EINTR) {
				return err
			}
			if watch >= 0 && fds[watch].Revents&unix.POLLIN != 0 {
				for { // drain the watch's events: any of them is a reason to look
					if k, _ := unix.Read(int(fds[watch].Fd), events[:]); k <= 0 {
						break
					}
				}
				fds[watch].Fd = -1 // the watch is gone with the directory: poll ignores it now
			}
		} else {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(sleep):
			}
		}
	}
	return nil
}

// Reap cleans up after mount id if its server is gone: it detaches the
// mountpoint lazily (a dead server leaves "transport endpoint is not
// connected"), then deletes the top layer and the lease, or, for a kept
// mount, keeps them and marks the lease stopped. A mount whose server runs
// is left alone (layerstore.ErrInUse); a lease that is gone is no error.
func Reap(st *layerstore.Store, id string) error {
	_, err := reap(st, id)
	return err
}

// reap is Reap; it returns the kept lease as it left it (nil when there is
// none left), for Remove to remove only if no Resume took it up since.
func reap(st *layerstore.Store, id string) (*layerstore.MountRecord, error) {
	rec, err := lease(st, id)
	if errors.Is(err, layerstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if rec.Running() {
		return nil, fmt.Errorf("mount %s: served by pid %d: %w", id, rec.PID, layerstore.ErrInUse)
	}
	if rec.Dir != "" {
		if _, err := DetachFUSE(rec.Dir); err != nil {
			return nil, fmt.Errorf("mount %s: %w", id, err)
		}
	}
	if rec.Keep {
		if rec.PID == 0 {
			return rec, nil
		}
		rec.PID, rec.PIDStart = 0, 0
		return rec, st.UpdateMount(*rec)
	}
	// Not if a server took it up since it was read: its directory is in
	// use then.
	return nil, st.RemoveMountIf(id, rec.PID, rec.PIDStart)
}

// Remove deletes mount id for good, kept or not: its top layer and its
// lease. A mount whose server runs is refused (layerstore.ErrInUse): end it
// first. A lease that is gone costs no store transaction.
func Remove(st *layerstore.Store, id string) error {
	if _, err := lease(st, id); errors.Is(err, layerstore.ErrNotFound) {
		// A directory a lease never named, unless one is made now.
		if err := st.RemoveMountDir(id); !errors.Is(err, layerstore.ErrInUse) {
			return err
		}
	}
	rec, err := reap(st, id)
	if err != nil {
		return err
	}
	if rec == nil {
		return st.RemoveMount(id)
	}
	// Only the lease reap left stopped: a Resume that took it up since
	// serves its top layer (ErrInUse), which must not go under it.
	return st.RemoveMountIf(id, rec.PID, rec.PIDStart)
}
