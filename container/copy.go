package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/session"
)

// ErrReadOnlyRoot: a copy into a container started with --read-only, outside
// its volumes.
var ErrReadOnlyRoot = errors.New("container rootfs is marked read-only")

// CopyRoot is a container's file system as strata cp sees it: its root with
// its volumes and /etc files mounted where the container has them. Every
// path is resolved inside it, as if it were "/": no symlink or ".." leads
// out. A running container's is its own (/proc/PID/root); a stopped one's
// is its top layer mounted for the copy, with its binds laid over it in a
// mount namespace of the copy's own.
type CopyRoot struct {
	Tree
	rec   *Record
	close func() error
}

// OpenCopyRoot opens container ref's file system for strata cp. Close
// releases it (a stopped container's mount ends).
func (c *Containers) OpenCopyRoot(ctx context.Context, ref string) (*CopyRoot, error) {
	rec, err := c.records.Get(ref)
	if err != nil {
		return nil, err
	}
	if st := rec.State; st.Status == Running && st.Pid > 0 {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/root", st.Pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			// The pid is still the container's: its supervisor (checked
			// by Current) holds it until it has recorded the exit.
			return &CopyRoot{Tree: Tree{fd: fd}, rec: rec, close: func() error { return nil }}, nil
		}
		if again, gerr := c.records.Get(rec.ID); gerr != nil || again.State.Status == Running {
			return nil, fmt.Errorf("container %s: its root: %w", rec.ID[:12], err)
		}
		// It ended between the two looks: copy as into a stopped one.
	}
	s, err := session.Resume(ctx, c.st, rec.MountID, c.rootfs(rec.ID), c.sessionOptions(rec))
	if err != nil {
		return nil, fmt.Errorf("container %s: root file system: %w", rec.ID[:12], err)
	}
	mounts, err := c.prepareVolumes(rec, s.Dir())
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	var binds []bind
	for _, m := range mounts {
		binds = append(binds, bind{src: m.Source, dst: m.Destination, dir: true, ro: m.Options[2] == "ro"})
	}
	etc := c.records.Dir(rec.ID) + "/etc/"
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		if _, err := os.Stat(etc + name); err == nil {
			binds = append(binds, bind{src: etc + name, dst: "/etc/" + name})
		}
	}
	fd, ns, err := privateRoot(s.Dir(), binds, rec.Options.ReadOnly)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("container %s: %w", rec.ID[:12], err), s.Close())
	}
	// The namespace's copy of the mount must go before the mount can end.
	end := func() error { return errors.Join(unix.Close(ns), s.Close()) }
	return &CopyRoot{Tree: Tree{fd: fd}, rec: rec, close: end}, nil
}

// WritableAt says whether a copy may write at p (inside the container,
// its symlinks followed there first, as the copy will): anywhere unless the
// root is read-only, then only in a volume mounted read-write. It is the
// early, docker-worded refusal; what holds a copy to it is the root being
// mounted read-only for it (privateRoot), as it is in the container.
func (r *CopyRoot) WritableAt(p string) error {
	if !r.rec.Options.ReadOnly {
		return nil
	}
	p, err := r.Resolve(p)
	if err != nil {
		return err
	}
	p = path.Clean("/" + p)
	for _, v := range r.rec.Volumes {
		if !v.ReadOnly && (p == v.Destination || strings.HasPrefix(p, v.Destination+"/")) {
			return nil
		}
	}
	return ErrReadOnlyRoot
}

// Close releases the root; a stopped container's mount ends.
func (r *CopyRoot) Close() error {
	err := r.Tree.Close()
	return errors.Join(err, r.close())
}

type bind struct {
	src, dst string
	dir, ro  bool
}

// privateRoot returns a descriptor of rootfs in a new mount namespace in
// which binds are mounted at their destinations (resolved inside rootfs, a
// missing one made), and a descriptor of that namespace, which keeps it
// (and so its mounts) alive until closed. Lookups from the root descriptor
// see the namespace's mounts from any thread. The thread that made it goes
// back to the process's namespace and is not handed back to Go's pool.
// readOnly mounts rootfs itself read-only there once the binds are in, as
// the container sees it: no path into it, a link a copy made in a volume
// included, can write to it (the kernel refuses, EROFS).
func privateRoot(rootfs string, binds []bind, readOnly bool) (root, ns int, err error) {
	type result struct {
		root, ns int
		err      error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's fs state is its own now
		r := result{root: -1, ns: -1}
		defer func() { ch <- r }()
		orig, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			r.err = err
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			r.err = fmt.Errorf("unshare: %w", err)
			return
		}
		defer func() {
			if err := unix.Setns(orig, unix.CLONE_NEWNS); err != nil {
				panic(fmt.Sprintf("container: back to the process's mount namespace: %v", err))
			}
		}()
		r.err = func() error {
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make mounts private: %w", err)
			}
			for _, b := range binds {
				if err := bindInRoot(rootfs, b); err != nil {
					return err
				}
			}
			if readOnly {
				if err := unix.Mount("", rootfs, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
					return fmt.Errorf("mount the root read-only: %w", err)
				}
			}
			var err error
			if r.ns, err = unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
				return err
			}
			r.root, err = unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			return err
		}()
		if r.err != nil {
			for _, fd := range []int{r.root, r.ns} {
				if fd >= 0 {
					unix.Close(fd)
				}
			}
			r.root, r.ns = -1, -1
		}
	}()
	r := <-ch
	return r.root, r.ns, r.err
}

// bindInRoot mounts b.src on b.dst inside rootfs, through a descriptor of
// the destination resolved inside rootfs, so a symlink in the image cannot
// aim the mount at a host path.
func bindInRoot(rootfs string, b bind) error {
	if b.dir {
		if err := mkdirAllInRoot(rootfs, b.dst); err != nil {
			return err
		}
	}
	flags := unix.O_PATH
	if b.dir {
		flags |= unix.O_DIRECTORY
	}
	dst, err := openInRoot(rootfs, b.dst, flags|unix.O_NOFOLLOW)
	if errors.Is(err, os.ErrNotExist) && !b.dir {
		return nil // the image has no such file: nothing is mounted there
	}
	if err != nil {
		return fmt.Errorf("mount point %s: %w", b.dst, err)
	}
	defer dst.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(dst.Fd()), &st); err != nil {
		return err
	}
	want := uint32(unix.S_IFREG)
	if b.dir {
		want = unix.S_IFDIR
	}
	if st.Mode&unix.S_IFMT != want {
		return nil // not a file the container's bind would cover
	}
	if err := unix.Mount(b.src, fmt.Sprintf("/proc/self/fd/%d", dst.Fd()), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", b.src, b.dst, err)
	}
	if !b.ro {
		return nil
	}
	// The descriptor names what lies under the new mount; look again.
	top, err := openInRoot(rootfs, b.dst, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	defer top.Close()
	if err := unix.Mount("", fmt.Sprintf("/proc/self/fd/%d", top.Fd()), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s read-only: %w", b.dst, err)
	}
	return nil
}
