package fs

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// Options configure a mount. Objects is required, and Upper unless ReadOnly.
type Options struct {
	// ReadOnly mounts without an upper dir; every change fails with EROFS.
	ReadOnly bool
	// Upper is an existing empty directory that receives the mount's changes
	// (see the package doc for its format). Required unless ReadOnly. The
	// mount owns it while it is live; the caller deletes it after Unmount,
	// or keeps it for Diff and WriteLayer.
	Upper string
	// Objects returns the path of the file holding the content of a digest.
	Objects func(digest.Digest) string
	// Resume takes up the changes an earlier mount of the same tree left in
	// Upper (a server restarted over a kept top layer), instead of
	// requiring Upper to be empty.
	Resume bool
	// Suid and Dev let setuid/setgid bits and device nodes take effect.
	// By default the mount is nosuid,nodev: an image's files are not the
	// host's to trust, and with AllowOther a setuid-root file or a 0666
	// device node in an image would be any local user's way to root.
	Suid, Dev bool
	// AllowOther lets users other than the server's use the mount; the
	// kernel checks permissions (default_permissions is always on).
	AllowOther bool
	// Passthrough lets the kernel read and write files without a request
	// to the server (FUSE passthrough, kernel 6.9+, root): on a read-only
	// mount large lower files, read from their objects; on a writable one
	// the top layer's files with data of their own, read and written in
	// their upper files (iomode.go). When the kernel refuses, the mount
	// logs why and serves every read and write itself.
	Passthrough bool
	// Writeback lets the kernel cache writes to the top layer and send
	// them in large batches (the FUSE writeback cache), as it does for a
	// local file system: small writes cost no round trip each. Data a
	// process wrote reaches the upper dir when the kernel writes it back
	// (at the latest on fsync, syncfs, close or unmount); Sync forces it.
	// The kernel does not combine it with passthrough on one mount
	// (process_init_reply in fs/fuse/inode.c): asked for both, a mount
	// uses passthrough where PassthroughAvailable, else the writeback
	// cache. Ignored when ReadOnly.
	Writeback bool
	// Trace counts FUSE requests by opcode (Server.Trace).
	Trace bool
	// Logger receives diagnostics. Default: discard.
	Logger *slog.Logger
	// Debug logs every FUSE request.
	Debug bool
	// FsName is the source shown in /proc/mounts. Default "strata".
	FsName string

	noRaw bool // tests: every node through go-fuse's bridge, as before raw nodes
}

// Server is a live mount.
type Server struct {
	fuse        *fuse.Server
	u           *union
	dir         string
	log         *slog.Logger
	passthrough bool
	writeback   bool
	trace       *opCounts
}

// Mount mounts tree on dir and returns once the mount is ready.
func Mount(dir string, tree *layerstore.Tree, opts *Options) (*Server, error) {
	if tree == nil || opts == nil || opts.Objects == nil {
		return nil, fmt.Errorf("mount %s: tree, options and Options.Objects are required: %w", dir, layerstore.ErrInvalid)
	}
	rootEntry, ok := tree.Lookup("")
	if !ok || rootEntry.Type != layerstore.TypeDir {
		return nil, fmt.Errorf("mount %s: tree has no root directory: %w", dir, layerstore.ErrInvalid)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	u := newUnion(tree, opts, log)
	u.root = &node{u: u, ino: rootEntry.Ino, lower: rootEntry.Ref()}
	if !opts.ReadOnly {
		if opts.Upper == "" {
			return nil, fmt.Errorf("mount %s: Options.Upper is required unless ReadOnly: %w", dir, layerstore.ErrInvalid)
		}
		up, err := filepath.Abs(opts.Upper)
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", dir, err)
		}
		u.upper = up
		if u.rootFd, err = openat(unix.AT_FDCWD, up, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return nil, fmt.Errorf("mount %s: upper dir: %w", dir, &os.PathError{Op: "open", Path: up, Err: err})
		}
		if err := u.initUpper(rootEntry, opts.Resume); err != nil {
			u.closeRoot()
			return nil, fmt.Errorf("mount %s: upper dir %s: %w", dir, up, err)
		}
	}

	sample := sampleObject(tree, opts.Objects)
	if sample != "" {
		u.objDir = filepath.Dir(sample)
	}
	// MaxWrite: every request reader holds a buffer of that size (up to
	// GOMAXPROCS+1 readers, at most 17), resident once a write has filled
	// it. After a 64 MB dd a resting server held 16-18 MB with 1 MiB and
	// 10.7 MB with 128 KiB, and a dd bs=4k of 100 MB through the writeback
	// cache, or a cold read of it, took the same time with either.
	mo := fuse.MountOptions{
		AllowOther:           opts.AllowOther,
		FsName:               opts.FsName,
		Name:                 "strata",
		Options:              []string{"default_permissions"},
		MaxWrite:             128 << 10,
		MaxReadAhead:         1 << 20,
		MaxBackground:        64,
		EnableSymlinkCaching: true, // symlinks never change: a new one is a new inode
		// The kernel keeps POSIX ACLs (and their absence) in its inode
		// cache and checks them itself: ls -l asks for
		// system.posix_acl_access on every entry.
		EnableAcl: true,
		// HANDLE_KILLPRIV_V2: rawFS clears setuid/setgid bits itself, and
		// the kernel stops asking for security.capability before every
		// write (see rawfs.go).
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_HANDLE_KILLPRIV_V2,
		Debug:             opts.Debug,
		Logger:            slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if os.Geteuid() == 0 {
		mo.DirectMountStrict = true
		var flags uintptr
		if !opts.Suid {
			flags |= syscall.MS_NOSUID
		}
		if !opts.Dev {
			flags |= syscall.MS_NODEV
		}
		if opts.ReadOnly {
			flags |= syscall.MS_RDONLY
		}
		if flags == 0 {
			flags = syscall.MS_MGC_VAL // go-fuse's way of saying "no flags"
		}
		mo.DirectMountFlags = flags
	} else if opts.ReadOnly {
		mo.Options = append(mo.Options, "ro") // fusermount3 adds nosuid,nodev itself
	}
	// A writable mount asked for both gets passthrough where the kernel has
	// it, else the writeback cache: the kernel offers one or the other.
	writeback := opts.Writeback && !opts.ReadOnly
	passthrough := opts.Passthrough
	if writeback && passthrough {
		if ok, why := PassthroughAvailable(); ok {
			writeback = false
		} else {
			passthrough = false
			log.Info("strata fs: no FUSE passthrough here; the writeback cache caches writes instead", "why", why)
		}
	}
	if writeback {
		mo.ExtraCapabilities |= fuse.CAP_WRITEBACK_CACHE
	}
	if !passthrough {
		mo.DisabledCapabilities |= fuse.CAP_PASSTHROUGH
	} else if backing := backingDir(opts, sample); backing != "" && stackedFS(backing) {
		// Backing files on overlayfs or FUSE sit one level deeper than
		// the default stacking depth allows.
		mo.MaxStackDepth = 2
		log.Info("strata fs: backing files are on a stacked file system; allowing passthrough stacking depth 2", "dir", backing)
	}
	if opts.FsName == "" {
		mo.FsName = "strata"
	}

	// Node IDs are inode numbers (ExternalNodeID), the same whether
	// rawFS or the bridge answers for a node (rawnode.go); rawFS sets
	// the negative lookups' timeout (NegativeTimeout unset).
	if !opts.noRaw {
		u.raw.init(tree)
	}
	timeout := upperTimeout
	fsOpts := &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NullPermissions: true, // mode 0000 is a mode like any other
		RootStableAttr:  &gofs.StableAttr{Ino: rootEntry.Ino},
		ExternalNodeID:  rootEntry.Ino == fuse.FUSE_ROOT_ID,
		Logger:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	raw := &rawFS{RawFileSystem: gofs.NewNodeFS(u.root, fsOpts), u: u}
	if opts.Trace {
		raw.trace = &opCounts{}
	}
	// go-fuse opens /dev/fuse for a direct mount without O_CLOEXEC, so
	// every program this process starts after (runc) would hold the
	// connection: a server killed with requests read but unanswered would
	// leave their callers in D state for good (a container's init stuck
	// in its exec's GETXATTR, unkillable by rm -f). No fork runs between
	// the open and closeOnExecFUSE: a fork takes ForkLock for writing, as
	// the standard library's own non-atomic CLOEXEC opens do (fusermount,
	// the path that forks, sets the flag itself).
	if mo.DirectMountStrict {
		syscall.ForkLock.RLock()
	}
	fsrv, err := fuse.NewServer(raw, dir, &fsOpts.MountOptions)
	if mo.DirectMountStrict {
		closeOnExecFUSE()
		syscall.ForkLock.RUnlock()
	}
	if err != nil {
		u.closeRoot()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	go fsrv.Serve()
	if err := fsrv.WaitMount(); err != nil {
		_ = fsrv.Unmount()
		u.closeRoot()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		_ = fsrv.Unmount()
		u.closeRoot()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	u.dev.Store(st.Dev)
	s := &Server{fuse: fsrv, u: u, dir: dir, log: log, trace: raw.trace}
	if writeback {
		s.writeback = fsrv.KernelSettings().Flags64()&fuse.CAP_WRITEBACK_CACHE != 0
	}
	switch {
	case passthrough && !opts.ReadOnly:
		// Upper files pass through, lower files do not (iomode.go).
		s.passthrough = s.fuse.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0 && s.probeUpperPassthrough()
		u.upperPT.Store(s.passthrough)
		if !s.passthrough && opts.Writeback {
			log.Warn("strata fs: passthrough was chosen over the writeback cache but the kernel refused it: every read and write of this mount goes through the server (--no-passthrough gives the writeback cache)")
		}
	case passthrough:
		s.passthrough = s.probePassthrough(sample)
		u.passthrough.Store(s.passthrough)
	}
	return s, nil
}

// initUpper checks that the upper dir is an empty directory the server can
// keep its markers in, and gives it the root's attributes; with resume, it
// takes up what the upper dir holds instead.
func (u *union) initUpper(root *layerstore.Entry, resume bool) error {
	ents, err := readDirents(u.rootFd, ".")
	if err != nil {
		return err
	}
	if len(ents) > 0 && !resume {
		return fmt.Errorf("not empty: %w", layerstore.ErrInvalid)
	}
	if err := fsetxattr(u.rootFd, XattrPrefix+"probe", []byte("y"), 0); err != nil {
		return fmt.Errorf("cannot set %s xattrs (a writable mount needs a root server on a file system with trusted xattrs): %w", XattrPrefix, err)
	}
	_ = fremovexattr(u.rootFd, XattrPrefix+"probe")
	if !resume {
		if err := u.applyMeta(u.rootFd, root); err != nil {
			return err
		}
	}
	st, err := fstat(u.rootFd)
	if err != nil {
		return err
	}
	u.setIno(&st, root.Ino)
	u.copied.Store(root.Ino, struct{}{})
	if resume {
		return u.resumeUpper(root)
	}
	return nil
}

// backingDir is where a mount's passthrough backing files live: the upper
// dir of a writable mount, the objects of a read-only one.
func backingDir(opts *Options, sample string) string {
	if !opts.ReadOnly {
		return opts.Upper
	}
	if sample == "" {
		return ""
	}
	return filepath.Dir(sample)
}

// sampleObject returns the object path of some regular file of the tree, ""
// when it has none.
func sampleObject(tree *layerstore.Tree, objects func(digest.Digest) string) string {
	var p string
	errFound := errors.New("found")
	_ = tree.Walk(func(e *layerstore.Entry) error {
		if e.Type == layerstore.TypeReg && e.Digest != "" {
			if q := objects(e.Digest); q != "" {
				if _, err := os.Stat(q); err == nil {
					p = q
					return errFound
				}
			}
		}
		return nil
	})
	return p
}

// Magic numbers of file systems that stack on others.
const (
	overlayfsMagic = 0x794c7630
	fuseMagic      = 0x65735546
)

func stackedFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == overlayfsMagic || st.Type == fuseMagic
}

// probePassthrough asks the kernel to take an object as a backing file, as
// every passthrough open will, and says why when it will not.
func (s *Server) probePassthrough(obj string) bool {
	if obj == "" {
		return false // nothing to read
	}
	if s.fuse.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		s.log.Warn("strata fs: the kernel offers no FUSE passthrough (needs Linux 6.9+); reading objects in userspace")
		return false
	}
	f, err := openObject(obj)
	if err != nil {
		s.log.Warn("strata fs: passthrough probe", "err", err)
		return false
	}
	defer f.Close()
	return s.registerProbe(int(f.Fd()), "the object store")
}

// registerProbe reports whether the kernel takes fd, a file of where
// (objects or the upper dir), as a backing file, and logs why not.
func (s *Server) registerProbe(fd int, where string) bool {
	id, errno := s.fuse.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	if errno != 0 {
		why := "the kernel refused the file as a backing file"
		switch errno {
		case syscall.EPERM:
			why = "passthrough needs CAP_SYS_ADMIN"
		case syscall.ELOOP, syscall.EINVAL:
			why = where + " is on a stacked file system (overlayfs or FUSE) deeper than the passthrough stacking depth"
		}
		s.log.Warn("strata fs: FUSE passthrough is off for this mount: "+why+"; reading in userspace", "where", where, "errno", errno)
		return false
	}
	if errno := s.fuse.UnregisterBackingFd(id); errno != 0 {
		s.log.Warn("strata fs: unregistering the passthrough probe's backing file", "where", where, "errno", errno)
	}
	st, err := fstat(fd)
	if err == nil {
		err = s.u.backing.probed(s.fuse, s.log, fd, &st)
	}
	if err != nil {
		s.log.Warn("strata fs: FUSE passthrough is off for this mount", "where", where, "err", err)
		return false
	}
	return true
}

// Passthrough reports whether the mount uses FUSE passthrough: for large
// lower files on a read-only mount, for the top layer's files on a
// writable one.
func (s *Server) Passthrough() bool { return s.passthrough }

// Writeback reports whether the kernel caches writes to the top layer.
func (s *Server) Writeback() bool { return s.writeback }

// Trace returns the FUSE requests served since the last Trace with reset
// (or the mount), by opcode, most frequent first; nil unless Options.Trace.
func (s *Server) Trace(reset bool) []OpCount {
	if s.trace == nil {
		return nil
	}
	return s.trace.snapshot(reset)
}

// Sync makes the upper dir hold every write made through the mount: Diff
// and WriteLayer read the upper dir, and with the writeback cache the
// kernel may still hold writes (see SyncMount).
func (s *Server) Sync() error { return SyncMount(s.dir, s.u.upper) }

// SyncMount is Sync for a mount on dir with upper dir upper, served by any
// process. It needs the kernel's cached writes in the upper files, not on
// the host disk (a commit makes its layer durable itself), so it asks for
// no FSYNC, which the server answers with an fdatasync of the upper file.
// What it uses instead is close(2): with the writeback cache the kernel's
// fuse_flush (fs/fuse/file.c) writes the inode back and waits for the
// server to have answered every WRITE (write_inode_now, fuse_sync_writes),
// and returns the inode's writeback errors, before it would send FLUSH;
// this server's FLUSH is ENOSYS, so not even that is sent. So each regular
// file of the upper dir, the only ones a write can have gone to, is opened
// through the mount and closed. syncfs(2) would not do: fuse_sync_fs sends
// FUSE_SYNCFS only for virtiofs, kernels before 6.16 end a page's writeback
// when it is copied rather than answered, and its error is any writeback
// error of the whole mount since the open (a removed file's included). A
// file gone meanwhile (removed, renamed) is skipped; any other failure is
// an error, since the writes behind it may not be in the upper dir.
func SyncMount(dir, upper string) error {
	if upper == "" {
		return nil
	}
	return filepath.WalkDir(upper, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil // removed meanwhile
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil {
			return err
		}
		if err := flushFile(dir, rel); err != nil {
			return fmt.Errorf("sync %s: %w", dir, err)
		}
		return nil
	})
}

// flushFile opens rel under the mount on dir and closes it: the close
// writes back what the kernel caches of it. A file its owner may not read
// is opened for writing (no O_TRUNC: nothing changes); one gone or replaced
// since the walk saw it is no error.
func flushFile(dir, rel string) error {
	const flags = unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY
	p := filepath.Join(dir, rel)
	fd, err := unix.Open(p, unix.O_RDONLY|flags, 0)
	if err == unix.EACCES {
		fd, err = unix.Open(p, unix.O_WRONLY|flags, 0)
	}
	switch err {
	case nil:
	case unix.ENOENT, unix.ENOTDIR, unix.ELOOP:
		return nil // removed, renamed or replaced by a symlink meanwhile
	default:
		return &os.PathError{Op: "open", Path: rel, Err: err}
	}
	if err := unix.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: rel, Err: err}
	}
	return nil
}

// Dir is the mountpoint.
func (s *Server) Dir() string { return s.dir }

// Unmount unmounts cleanly, failing (with EBUSY inside) while the mount is
// in use.
func (s *Server) Unmount() error {
	if err := s.fuse.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", s.dir, err)
	}
	s.u.closeRoot()
	s.u.rawFiles.closeAll()
	s.u.state.closeHandles()
	s.u.state.dropPins()
	return nil
}

// Wait returns when the mount has ended, by Unmount or from outside.
func (s *Server) Wait() {
	s.fuse.Wait()
	s.u.closeRoot()
	s.u.rawFiles.closeAll()
	s.u.state.closeHandles()
	s.u.state.dropPins()
}

// closeOnExecFUSE sets FD_CLOEXEC on every /dev/fuse descriptor of this
// process (Mount's go-fuse leaves its own without it).
func closeOnExecFUSE() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if t, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && t == "/dev/fuse" {
			unix.CloseOnExec(fd)
		}
	}
}
