package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/layerstore"
)

// Options configure Start and Resume. The zero value mounts read-write,
// nosuid and nodev, for the mounting user only, with the FUSE writeback
// cache (read-only: with FUSE passthrough where the kernel has it), and
// deletes the top layer when the mount ends.
type Options struct {
	// ID names the mount (a directory under the store's mounts/). Default:
	// NewID(). Ignored by Resume.
	ID string
	// ReadOnly mounts without a top layer. Ignored by Resume (the lease
	// says).
	ReadOnly bool
	// Keep keeps the top layer and the lease when the server stops, for
	// Resume; only Remove deletes them. Ignored by Resume (the lease says).
	Keep bool
	// Owner is recorded in the lease (layerstore.MountRecord.Owner) by
	// Start and Prepare, so that what keeps a kept lease finds it after a
	// crash. Ignored by Resume.
	Owner string
	// Suid, Dev and AllowOther are fs.Options': an image's setuid bits and
	// device nodes take effect only when asked for.
	Suid, Dev, AllowOther bool
	// NoPassthrough serves every read and write in the server (fs.Options
	// Passthrough). A writable mount then has the writeback cache, unless
	// NoWriteback. By default a writable mount passes its top layer's
	// files through to the upper dir where the kernel can (Linux 6.9+,
	// root), and has the writeback cache where it cannot: the kernel
	// offers one or the other.
	NoPassthrough bool
	// NoWriteback never uses the writeback cache: without passthrough,
	// every write reaches the server as it happens.
	NoWriteback bool
	// Trace counts FUSE requests by opcode (Session.Trace).
	Trace bool
	// FsName is the source shown in /proc/mounts. Default "strata:" + the
	// image reference.
	FsName string
	// Logger receives diagnostics. Default: discard.
	Logger *slog.Logger
	// Debug logs every FUSE request.
	Debug bool
	// NeverServed tells Resume that nothing ever ran on the kept top layer
	// (a container created and never started): a lease an older strata's
	// kill left without its directory gets an empty one. Otherwise Resume
	// refuses a top layer whose directory is gone (layerstore.ErrCorrupt).
	NeverServed bool
	// OnBusy is called once when Serve, asked to stop, finds the mount in
	// use (it goes on serving until it can unmount). Default: a warning in
	// the log.
	OnBusy func(dir string, err error)
}

// Session is a mount this process serves.
type Session struct {
	st     *layerstore.Store
	rec    layerstore.MountRecord
	upper  string // "" when read-only
	srv    *fs.Server
	tree   *layerstore.Tree // mapped for the life of the server
	log    *slog.Logger
	onBusy func(dir string, err error)
	ended  chan struct{} // closed when the mount has ended
	timing Timing

	mu       sync.Mutex
	closed   bool
	closeErr error
}

// Timing is how long Start took to load the merged tree and to mount.
type Timing struct {
	Tree, Mount time.Duration
}

// NewID returns a fresh random mount ID: 12 hex digits.
func NewID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// UpperDir is where the top layer of mount id lives.
func UpperDir(st *layerstore.Store, id string) string {
	return filepath.Join(st.MountDir(id), upperName)
}

// upperName is the top layer's directory in the mount's.
const upperName = "upper"

// Start mounts image ref of st on dir (an existing directory) and returns
// once the mount is ready. The caller serves it with Serve, or ends it with
// Close.
func Start(ctx context.Context, st *layerstore.Store, ref, dir string, o Options) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, err := mountpoint(dir)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	imgID, tree, err := st.MountTree(ref)
	if err != nil {
		return nil, err
	}
	id := o.ID
	if id == "" {
		id = NewID()
	}
	rec := layerstore.MountRecord{
		ID:       id,
		Image:    imgID,
		Ref:      ref,
		Dir:      dir,
		ReadOnly: o.ReadOnly,
		Keep:     o.Keep && !o.ReadOnly,
		Owner:    o.Owner,
		Created:  time.Now(),
	}
	if err := setServer(&rec); err != nil {
		tree.Close()
		return nil, err
	}
	// The lease and its top layer's directory in one transaction: from
	// here on a crash leaves a lease that GC drops together with whatever
	// was made under mounts/<id>.
	add := st.AddMount
	if !rec.ReadOnly {
		add = func(rec layerstore.MountRecord) error { return st.AddMountDir(rec, upperName) }
	}
	if err := add(rec); err != nil {
		tree.Close()
		return nil, err
	}
	s := newSession(st, rec, o)
	s.timing.Tree = time.Since(t0)
	if err := s.mount(tree, ref, false, o); err != nil {
		return nil, errors.Join(err, st.RemoveMount(id), tree.Close())
	}
	return s, nil
}

// Prepare makes a kept top layer of image ref without mounting it: the
// lease, marked stopped as a kept session whose server stopped, and an
// empty top layer, for Resume to serve later (a container that is created
// now and started later). Options.ID names it; only Keep matters of the
// rest. It returns the lease.
func Prepare(ctx context.Context, st *layerstore.Store, ref string, o Options) (*layerstore.MountRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	img, err := st.ResolveImage(ref)
	if err != nil {
		return nil, err
	}
	id := o.ID
	if id == "" {
		id = NewID()
	}
	rec := layerstore.MountRecord{ID: id, Image: img.ID, Ref: ref, Keep: true, Owner: o.Owner, Created: time.Now()}
	// The lease with its layer, then the lease marked stopped. A crash in
	// between leaves a kept lease: the caller names it (Options.ID) before,
	// so that what it keeps can remove it (session.Remove).
	if err := st.AddMountDir(rec, upperName); err != nil {
		return nil, err
	}
	stopped, err := lease(st, id)
	if err != nil {
		return nil, errors.Join(err, st.RemoveMount(id))
	}
	stopped.PID, stopped.PIDStart = 0, 0
	if err := st.UpdateMount(*stopped); err != nil {
		return nil, errors.Join(err, st.RemoveMount(id))
	}
	return stopped, nil
}

// Resume serves the kept top layer of mount id again, on dir ("" for the
// mountpoint it had), with the lease's read-only and keep settings. A mount
// whose server still runs is refused with layerstore.ErrInUse; one whose
// server died is detached first.
func Resume(ctx context.Context, st *layerstore.Store, id, dir string, o Options) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rec, err := lease(st, id)
	if err != nil {
		return nil, err
	}
	if !rec.Keep {
		return nil, fmt.Errorf("mount %s: not kept across restarts, nothing to resume: %w", id, layerstore.ErrInvalid)
	}
	if rec.Running() {
		return nil, fmt.Errorf("mount %s: served by pid %d: %w", id, rec.PID, layerstore.ErrInUse)
	}
	if rec.Dir != "" {
		if _, err := DetachFUSE(rec.Dir); err != nil {
			return nil, fmt.Errorf("mount %s: stale mountpoint: %w", id, err)
		}
	}
	if dir == "" {
		dir = rec.Dir
	}
	if dir, err = mountpoint(dir); err != nil {
		return nil, err
	}
	t0 := time.Now()
	_, tree, err := st.MountTree(rec.Image.String())
	if err != nil {
		return nil, err
	}
	rec.Dir = dir
	if err := setServer(rec); err != nil {
		return nil, errors.Join(err, tree.Close())
	}
	if err := st.UpdateMount(*rec); err != nil {
		return nil, errors.Join(err, tree.Close())
	}
	o.ReadOnly, o.Keep = rec.ReadOnly, rec.Keep
	s := newSession(st, *rec, o)
	s.timing.Tree = time.Since(t0)
	if s.upper != "" {
		if err := s.upperThere(o.NeverServed); err != nil {
			return nil, errors.Join(err, s.release(), tree.Close())
		}
	}
	if err := s.mount(tree, rec.Ref, true, o); err != nil {
		return nil, errors.Join(err, s.release(), tree.Close())
	}
	return s, nil
}

// upperThere checks that the kept top layer's directory is there. One that
// is not was lost (since Start and Prepare make it with the lease), and an
// empty layer in its place would hide that: an error, unless neverServed
// (the caller knows nothing ever ran on it) and an older strata, which made
// the lease first, was killed before the directory: then it is made now.
func (s *Session) upperThere(neverServed bool) error {
	_, err := os.Lstat(s.upper)
	if errors.Is(err, os.ErrNotExist) {
		if neverServed {
			return os.MkdirAll(s.upper, 0o700)
		}
		return fmt.Errorf("mount %s: top layer %s is gone: %w", s.rec.ID, s.upper, layerstore.ErrCorrupt)
	}
	return err
}

func newSession(st *layerstore.Store, rec layerstore.MountRecord, o Options) *Session {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Session{st: st, rec: rec, log: log, onBusy: o.OnBusy, ended: make(chan struct{})}
	if !rec.ReadOnly {
		s.upper = UpperDir(st, rec.ID)
	}
	return s
}

// mountpoint makes dir absolute and checks that it is a directory.
func mountpoint(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%s: not a directory: %w", dir, layerstore.ErrInvalid)
	}
	return dir, nil
}

// setServer names this process as the server of rec.
func setServer(rec *layerstore.MountRecord) error {
	rec.PID = os.Getpid()
	st, err := layerstore.ProcessStart(rec.PID)
	rec.PIDStart = st
	return err
}

// mount mounts tree; resume takes up what the top layer holds.
func (s *Session) mount(tree *layerstore.Tree, ref string, resume bool, o Options) error {
	t0 := time.Now()
	if resume && s.upper != "" {
		// A top layer Prepare made and nothing ever served is new.
		if ents, err := os.ReadDir(s.upper); err == nil && len(ents) == 0 {
			resume = false
		}
	}
	name := o.FsName
	if name == "" {
		name = "strata:" + ref
	}
	srv, err := fs.Mount(s.rec.Dir, tree, &fs.Options{
		ReadOnly:    s.rec.ReadOnly,
		Upper:       s.upper,
		Resume:      resume,
		Objects:     s.st.ObjectPath,
		Suid:        o.Suid,
		Dev:         o.Dev,
		AllowOther:  o.AllowOther,
		Passthrough: !o.NoPassthrough,
		Writeback:   !o.NoWriteback,
		Trace:       o.Trace,
		Logger:      s.log,
		Debug:       o.Debug,
		FsName:      name,
	})
	if err != nil {
		return err
	}
	s.srv = srv
	s.tree = tree
	s.timing.Mount = time.Since(t0)
	go func() {
		srv.Wait()
		close(s.ended)
	}()
	return nil
}

// ID is the mount ID.
func (s *Session) ID() string { return s.rec.ID }

// Dir is the mountpoint.
func (s *Session) Dir() string { return s.rec.Dir }

// Upper is the top layer's directory, "" for a read-only mount.
func (s *Session) Upper() string { return s.upper }

// Record is the mount's lease as this session holds it.
func (s *Session) Record() layerstore.MountRecord { return s.rec }

// Trace returns the FUSE requests served by opcode (fs.Server.Trace).
func (s *Session) Trace(reset bool) []fs.OpCount { return s.srv.Trace(reset) }

// Writeback reports whether the kernel caches the mount's writes.
func (s *Session) Writeback() bool { return s.srv.Writeback() }

// Passthrough reports whether lower files are read through FUSE passthrough.
func (s *Session) Passthrough() bool { return s.srv.Passthrough() }

// Timing is how long the start took.
func (s *Session) Timing() Timing { return s.timing }

// Done is closed when the mount has ended (Close, or an unmount from
// elsewhere); the session still needs Close to clean up.
func (s *Session) Done() <-chan struct{} { return s.ended }

// Serve serves until the mount ends (an unmount from elsewhere) or ctx is
// done, then closes the session. When ctx is done while the mount is in
// use, it keeps serving and unmounts as soon as it is no longer in use
// (or is detached from elsewhere).
func (s *Session) Serve(ctx context.Context) error {
	select {
	case <-s.ended:
	case <-ctx.Done():
		warned := false
		for {
			err := s.srv.Unmount()
			if err == nil {
				<-s.ended
				break
			}
			if !warned && s.onBusy != nil {
				s.onBusy(s.rec.Dir, err)
				warned = true
			}
			if !warned {
				s.log.Warn("strata mount: cannot unmount, still serving; it unmounts once no longer in use (close what uses it, or detach it with strata umount --lazy)", "dir", s.rec.Dir, "err", err)
				warned = true
			}
			select {
			case <-s.ended:
			case <-time.After(250 * time.Millisecond):
				continue
			}
			break
		}
	}
	return s.Close()
}

// Close unmounts, waits for the server to end, and deletes the top layer and
// the lease (a kept session keeps both, marked as served by no one). A mount
// in use is not unmounted: Close then fails (EBUSY inside) and the session
// stays as it was. Close of a closed session returns the first result.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.closeErr
	}
	select {
	case <-s.ended:
	default:
		if err := s.srv.Unmount(); err != nil {
			return err
		}
		<-s.ended
	}
	s.closed = true
	s.closeErr = errors.Join(s.release(), s.tree.Close()) // the server is done with the tree
	return s.closeErr
}

// release lets go of the top layer and the lease once nothing is mounted.
func (s *Session) release() error {
	if s.rec.Keep {
		stopped := s.rec
		stopped.PID, stopped.PIDStart = 0, 0
		return s.st.UpdateMount(stopped)
	}
	return s.st.RemoveMount(s.rec.ID)
}
