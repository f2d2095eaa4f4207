package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/session"
)

// Contender names.
const (
	Native        = "native"
	Overlayfs     = "overlayfs"
	FuseOverlayfs = "fuse-overlayfs"
	Strata        = "strata"
	// OverlayfsMount2 is kernel overlayfs mounted the classic way, measured
	// in the depth workload only.
	OverlayfsMount2 = "overlayfs-mount2"
	// StrataWriteback is strata with the writeback cache instead of
	// passthrough (the default where the kernel has no passthrough). Not
	// measured unless asked for (--contenders).
	StrataWriteback = "strata-writeback"
)

// AllContenders is every contender measured by default, in table order.
var AllContenders = []string{Native, Overlayfs, FuseOverlayfs, Strata}

// knownContenders is every contender a run may ask for.
var knownContenders = append(slices.Clone(AllContenders), StrataWriteback)

// contender is one way of showing an image's layers as a directory.
type contender struct {
	name string
	// why is non-empty when the contender cannot run here.
	why string
	// prepare does untimed per-image work (strata loads the image).
	prepare func(ctx context.Context, img *ImageData) error
	// mount shows img at a new root. Its duration is the mount time.
	mount func(ctx context.Context, img *ImageData) (*mounted, error)
}

// mounted is a live root of a contender.
type mounted struct {
	root string
	// fresh brings the root back to its state right after mount (empty
	// upper); the harness calls it before workloads that write.
	fresh func(ctx context.Context) error
	// unmount undoes the mount; called exactly once.
	unmount func() error
	// profile starts (file != "") or stops (file == "") a CPU profile of
	// the server; nil for contenders without one.
	profile func(file string) error
	// trace fetches and resets the server's FUSE request counts by opcode;
	// nil unless tracing.
	trace func() (opTrace, error)
	// note describes how the mount runs (passthrough, options).
	note string
	// phases, when set, breaks the mount time down (strata: open, tree,
	// mount).
	phases func() map[string]time.Duration
}

// mountSet remembers live mounts so that every one is undone.
type mountSet struct {
	mu   sync.Mutex
	live map[*mounted]bool
}

func (s *mountSet) add(m *mounted) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == nil {
		s.live = map[*mounted]bool{}
	}
	s.live[m] = true
}

// release unmounts m and forgets it.
func (s *mountSet) release(m *mounted) error {
	s.mu.Lock()
	live := s.live[m]
	delete(s.live, m)
	s.mu.Unlock()
	if !live {
		return nil
	}
	return m.unmount()
}

// releaseAll unmounts every live mount.
func (s *mountSet) releaseAll() error {
	s.mu.Lock()
	ms := make([]*mounted, 0, len(s.live))
	for m := range s.live {
		ms = append(ms, m)
	}
	s.mu.Unlock()
	var errs []error
	for _, m := range ms {
		errs = append(errs, s.release(m))
	}
	return errors.Join(errs...)
}

// newNative is the plain directory holding the merged tree. Mount, fresh
// and unmount undo what the writing workloads change: the big file's size
// and mode, and the write-heavy directory.
func newNative(ds *Dataset) *contender {
	return &contender{
		name:    Native,
		prepare: func(context.Context, *ImageData) error { return nil },
		mount: func(_ context.Context, img *ImageData) (*mounted, error) {
			if img.Merged == "" {
				return nil, fmt.Errorf("%s has no merged tree", img.Name)
			}
			root := img.Merged
			restore := func(ctx context.Context) error {
				if img.Pristine != "" {
					if err := os.RemoveAll(root); err != nil {
						return err
					}
					out, err := exec.CommandContext(ctx, "cp", "-a", img.Pristine, root).CombinedOutput()
					if err != nil {
						return fmt.Errorf("cp -a %s: %w: %s", img.Pristine, err, lastLine(out))
					}
					return nil
				}
				if img != ds.Main {
					return nil
				}
				big := filepath.Join(root, ds.BigFile)
				errs := []error{os.Truncate(big, ds.Spec.BigSize), os.Chmod(big, 0o644)}
				wr, _ := filepath.Glob(filepath.Join(root, "wr-*"))
				for _, p := range wr {
					errs = append(errs, os.RemoveAll(p))
				}
				return errors.Join(errs...)
			}
			// A run that was killed may have left its changes.
			if err := restore(context.Background()); err != nil {
				return nil, err
			}
			return &mounted{
				root:  root,
				fresh: restore,
				unmount: func() error {
					if img.Pristine != "" {
						return os.RemoveAll(root)
					}
					return restore(context.Background())
				},
				note: "plain directory on the work directory's file system",
			}, nil
		},
	}
}

// dirCounter names mount directories uniquely within a run.
type dirCounter struct {
	mu sync.Mutex
	n  int
}

func (c *dirCounter) next(runDir, name string) (string, error) {
	c.mu.Lock()
	c.n++
	n := c.n
	c.mu.Unlock()
	d := filepath.Join(runDir, fmt.Sprintf("%s-%d", name, n))
	for _, sub := range []string{"mnt", "upper", "work"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return "", err
		}
	}
	return d, nil
}

// newOverlay is kernel overlayfs (Overlayfs, mounted with the new mount
// API; OverlayfsMount2, mounted with mount(2) and one option string) or
// fuse-overlayfs (FuseOverlayfs).
func newOverlay(runDir, name string, dirs *dirCounter) *contender {
	c := &contender{name: name, prepare: func(context.Context, *ImageData) error { return nil }}
	mountFn := mountOverlay
	switch name {
	case FuseOverlayfs:
		mountFn = mountFuseOverlayfs
		if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
			c.why = "fuse-overlayfs is not installed (apt-get install fuse-overlayfs)"
		}
	case OverlayfsMount2:
		mountFn = mountOverlay2
	}
	if os.Geteuid() != 0 && name != FuseOverlayfs {
		c.why = "kernel overlayfs needs root here"
	}
	c.mount = func(ctx context.Context, img *ImageData) (*mounted, error) {
		d, err := dirs.next(runDir, c.name)
		if err != nil {
			return nil, err
		}
		mnt, upper, work := filepath.Join(d, "mnt"), filepath.Join(d, "upper"), filepath.Join(d, "work")
		lowers := slices.Clone(img.LayerDirs)
		slices.Reverse(lowers) // overlayfs names the top layer first
		if err := mountFn(ctx, lowers, upper, work, mnt); err != nil {
			return nil, err
		}
		m := &mounted{root: mnt, note: "lowerdir, upperdir, workdir; default options"}
		m.unmount = func() error {
			err := unmountDir(mnt)
			return errors.Join(err, os.RemoveAll(d))
		}
		m.fresh = func(ctx context.Context) error {
			if err := unmountDir(mnt); err != nil {
				return err
			}
			for _, p := range []string{upper, work} {
				if err := os.RemoveAll(p); err != nil {
					return err
				}
				if err := os.Mkdir(p, 0o755); err != nil {
					return err
				}
			}
			return mountFn(ctx, lowers, upper, work, mnt)
		}
		return m, nil
	}
	return c
}

// mountOverlay mounts kernel overlayfs with the new mount API, one
// "lowerdir+" per layer, so that the layer count and not the length of an
// option string is what limits depth; mount(2) is the fallback for kernels
// without it.
func mountOverlay(_ context.Context, lowers []string, upper, work, mnt string) error {
	err := fsmountOverlay(lowers, upper, work, mnt)
	if errors.Is(err, unix.ENOSYS) {
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work)
		if err = mountData(opts); err == nil {
			err = unix.Mount("overlay", mnt, "overlay", 0, opts)
		}
	}
	if err != nil {
		return fmt.Errorf("mount overlayfs of %d layers: %w", len(lowers), err)
	}
	return nil
}

// mountOverlay2 mounts kernel overlayfs with mount(2), whose option string
// the kernel limits to a page: that, not overlayfs, is what limits the depth
// (docker's overlay2 shortens the paths with symlinks, and caps images at
// 128 layers).
func mountOverlay2(_ context.Context, lowers []string, upper, work, mnt string) error {
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work)
	if err := mountData(opts); err != nil {
		return fmt.Errorf("mount(2) overlayfs of %d layers: %w", len(lowers), err)
	}
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount(2) overlayfs of %d layers: %w", len(lowers), err)
	}
	return nil
}

// mountData refuses an option string mount(2) would cut: the kernel copies
// one page of it and drops the rest without a word, so a long lowerdir list
// either names a missing directory or, worse, mounts fewer layers.
func mountData(opts string) error {
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("its %d-byte option string is longer than the page the kernel copies (%d bytes)", len(opts), os.Getpagesize())
	}
	return nil
}

func fsmountOverlay(lowers []string, upper, work, mnt string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	set := func(k, v string) error {
		if err := unix.FsconfigSetString(fd, k, v); err != nil {
			return fmt.Errorf("%s=%s: %w%s", k, v, err, fsLog(fd))
		}
		return nil
	}
	if err := set("source", "overlay"); err != nil {
		return err
	}
	for _, l := range lowers {
		if err := set("lowerdir+", l); err != nil {
			return err
		}
	}
	if err := set("upperdir", upper); err != nil {
		return err
	}
	if err := set("workdir", work); err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create: %w%s", err, fsLog(fd))
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w%s", err, fsLog(fd))
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, mnt, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// fsLog reads the kernel's messages about a failed fsconfig.
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 512)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, string(buf[:n]))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

func mountFuseOverlayfs(ctx context.Context, lowers []string, upper, work, mnt string) error {
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work)
	// Without -f it daemonizes once the mount is ready.
	out, err := exec.CommandContext(ctx, "fuse-overlayfs", "-o", opts, mnt).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fuse-overlayfs of %d layers: %w: %s", len(lowers), err, lastLine(out))
	}
	return nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// unmountBusyWait is how long unmountDir retries a busy mount: a tool the
// workload ran may still be exiting, or the kernel still dropping its last
// references (on a loaded machine, for seconds).
const unmountBusyWait = 15 * time.Second

// unmountDir unmounts mnt, retrying while it is busy (with a sync and a
// growing pause), and detaches it lazily as the last resort so that nothing
// stays mounted; the cell that needed it then fails, saying so.
func unmountDir(mnt string) error {
	var err error
	pause := 10 * time.Millisecond
	for deadline := time.Now().Add(unmountBusyWait); ; {
		err = unix.Unmount(mnt, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // EINVAL: not a mount point (any more)
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			break
		}
		unix.Sync()
		time.Sleep(pause)
		pause = min(2*pause, time.Second)
	}
	if err2 := unix.Unmount(mnt, unix.MNT_DETACH); err2 == nil {
		return fmt.Errorf("unmount %s: %w (detached lazily)", mnt, err)
	}
	return fmt.Errorf("unmount %s: %w", mnt, err)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	mi, err := session.ReadMountinfo()
	if err != nil {
		return nil, err
	}
	return session.MountsUnder(mi, dir), nil
}

// opTrace is what a strata server counted since the last trace: requests
// by opcode (n) and the nanoseconds it spent on them (ns; none from an
// older server).
type opTrace struct{ n, ns map[string]uint64 }
