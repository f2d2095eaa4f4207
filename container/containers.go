package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// ErrRunning: the operation needs a container that is not running.
var ErrRunning = errors.New("container is running")

// ErrNotRunning: the operation needs a running container.
var ErrNotRunning = errors.New("container is not running")

// Containers creates, runs and removes the containers of a store. Each
// container's root file system is a kept mount session of its image (its
// top layer lives until the container is removed), mounted under
// <store>/containers/<id>/rootfs, a directory only root can reach.
type Containers struct {
	st      *layerstore.Store
	records *Records
	rt      *Runtime
	log     *slog.Logger
	// stuckAfter: see Config.StuckAfter.
	stuckAfter time.Duration
}

// Config configures Open.
type Config struct {
	// Runtime runs the bundles. Default: runc with its state under
	// /run/strata/runc.
	Runtime *Runtime
	// Logger receives diagnostics. Default: discard.
	Logger *slog.Logger
	// StuckAfter is how long stop and rm -f wait, once the container was
	// sent SIGKILL, for its supervisor to record the exit; a supervisor
	// that has not by then (stopped, or hung) is killed, as docker kills a
	// stuck shim, and the container is taken as exited. Default 10s.
	StuckAfter time.Duration
}

// Open opens the containers of st.
func Open(st *layerstore.Store, cfg Config) (*Containers, error) {
	recs, err := OpenRecords(RecordsDir(st.Root()))
	if err != nil {
		return nil, err
	}
	c := &Containers{st: st, records: recs, rt: cfg.Runtime, log: cfg.Logger, stuckAfter: cfg.StuckAfter}
	if c.stuckAfter <= 0 {
		c.stuckAfter = 10 * time.Second
	}
	if c.rt == nil {
		c.rt = &Runtime{}
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}

// Records are the containers' records.
func (c *Containers) Records() *Records { return c.records }

// CreateOptions describe a new container.
type CreateOptions struct {
	Name string
	Options
	AutoRemove  bool
	OpenStdin   bool
	StopSignal  string
	StopTimeout *int
	Labels      map[string]string
	// Volumes are -v's (see ParseVolume); each VOLUME of the image gets an
	// anonymous volume unless one of them mounts there.
	Volumes []Volume
	// Ports are -p's (see ParsePublish), on the private network only.
	Ports []Port
	// StartNow: the container's first Run follows at once (strata run), so
	// its top layer is made then, with its mount, in one step (one store
	// commit instead of three). Without it the top layer is made now and
	// waits, as docker create's does (cp, diff and commit reach it before
	// any start). A run that fails before its root is mounted makes the
	// top layer then, so the container holds its image as a created one
	// does; a kill in that window leaves it without one until its start.
	StartNow bool
}

// Create makes a container of image ref: its record and its top layer (a
// kept mount session, stopped until Start). Nothing is left behind when it
// fails.
func (c *Containers) Create(ctx context.Context, ref string, o CreateOptions) (rec *Record, err error) {
	// The image is resolved and the record naming it made under the
	// store's shared lock: a removal (which reads the records) comes
	// before both or after both.
	err = c.st.Use(func() error {
		rec, err = c.create(ref, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Record, error) {
		return nil, errors.Join(err, c.remove(rec))
	}
	if err := os.Mkdir(c.rootfs(rec.ID), 0o755); err != nil {
		return fail(err)
	}
	if o.StartNow {
		return rec, nil // Run makes the top layer (mountRoot)
	}
	// The top layer waits, unmounted, for the first start.
	so := c.sessionOptions(rec)
	so.ID = rec.MountID
	if _, err := session.Prepare(ctx, c.st, rec.Image.String(), so); err != nil {
		return fail(err)
	}
	return rec, nil
}

// create checks o and records a container of image ref.
func (c *Containers) create(ref string, o CreateOptions) (*Record, error) {
	img, err := c.st.ResolveImage(ref)
	if err != nil {
		return nil, err
	}
	switch o.Network {
	case "":
		o.Network = NetworkPrivate
	case NetworkPrivate, NetworkNone, NetworkHost:
	default:
		return nil, fmt.Errorf("network %q: want %s, %s or %s", o.Network, NetworkPrivate, NetworkNone, NetworkHost)
	}
	if len(o.Ports) > 0 && o.Network != NetworkPrivate {
		return nil, fmt.Errorf("published ports need the %s network (the container has network %s)", NetworkPrivate, o.Network)
	}
	runcRoot, err := filepath.Abs(c.rt.root())
	if err != nil {
		return nil, err
	}
	id := NewID()
	rec := &Record{
		ID:          id,
		Name:        o.Name,
		Image:       img.ID,
		ImageRef:    ref,
		Created:     time.Now().UTC(),
		MountID:     id[:12], // named before it exists: rm finds it after any crash
		RuncRoot:    runcRoot,
		Options:     o.Options,
		Config:      img.Config.Config,
		AutoRemove:  o.AutoRemove,
		OpenStdin:   o.OpenStdin,
		StopSignal:  o.StopSignal,
		StopTimeout: o.StopTimeout,
		Labels:      o.Labels,
		Ports:       o.Ports,
		State:       State{Status: Created},
	}
	if rec.StopSignal == "" {
		rec.StopSignal = img.Config.Config.StopSignal
	}
	if _, err := ParseSignal(rec.StopSignal); err != nil {
		return nil, err
	}
	if rec.Volumes, err = volumes(o.Volumes, img.Config.Config.Volumes); err != nil {
		return nil, err
	}
	if err := c.records.Create(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// runtime is the runtime of container rec: c's, with the state directory
// rec was made with when its record names one.
func (c *Containers) runtime(rec *Record) *Runtime {
	if rec.RuncRoot == "" || rec.RuncRoot == c.rt.root() {
		return c.rt
	}
	rt := *c.rt
	rt.Root = rec.RuncRoot
	return &rt
}

func (c *Containers) sessionOptions(rec *Record) session.Options {
	return session.Options{
		Keep: true,
		// The mountpoint sits under a 0700 directory: setuid programs work
		// inside the container and nowhere else. Other uids in the
		// container need the mount.
		Suid:       true,
		AllowOther: true,
		FsName:     "strata-container:" + rec.ID[:12],
		Owner:      owner(rec.ID),
		Logger:     c.log,
		// Nothing ran on the top layer of a container never started: a
		// kill in an older strata's making of it may have left its lease
		// without the directory (Resume makes it then, and only then).
		NeverServed: rec.State.Status == Created && rec.State.StartedAt.IsZero(),
	}
}

func (c *Containers) rootfs(id string) string { return filepath.Join(c.records.Dir(id), "rootfs") }
func (c *Containers) bundle(id string) string { return filepath.Join(c.records.Dir(id), "bundle") }

// LogPath is where container id's output is kept.
func (c *Containers) LogPath(id string) string {
	return filepath.Join(c.records.Dir(id), id+"-json.log")
}

// Run serves container ref's root file system, runs it under the runtime
// until it exits, and records its state; this process is the container's
// supervisor. Its output goes to the log and to stdio (which may be nil:
// detached). started is called once the container runs (or with the error
// that kept it from running). Run returns the exit status as docker's:
// the command's, 126 or 127 when it could not be run (a *StartError), 128+N
// after signal N.
func (c *Containers) Run(ctx context.Context, ref string, stdio Stdio, started func(error)) (int, error) {
	var once sync.Once
	report := func(err error) {
		once.Do(func() {
			if started != nil {
				started(err)
			}
		})
	}
	code, err := c.run(ctx, ref, stdio, report)
	if err != nil {
		report(err)
	}
	return code, err
}

func (c *Containers) run(ctx context.Context, ref string, stdio Stdio, started func(error)) (code int, err error) {
	tl := c.timeline()
	rec, err := c.records.Get(ref)
	if err != nil {
		return ExitRuntimeFailed, err
	}
	if rec.Lost {
		return ExitRuntimeFailed, errors.New(rec.State.Error)
	}
	if rec.State.Status == Running {
		return ExitRuntimeFailed, fmt.Errorf("container %s: %w", rec.ID[:12], ErrRunning)
	}
	// The run lock, held to the end (deferred first, so let go last), and
	// the record read again under it: an rm that came first removed it.
	unlock, ok, err := c.tryRunLock(rec.ID)
	switch {
	case err != nil:
		return ExitRuntimeFailed, err
	case !ok:
		return ExitRuntimeFailed, fmt.Errorf("container %s: being started or removed: %w", rec.ID[:12], ErrRunning)
	case unlock == nil:
		return ExitRuntimeFailed, fmt.Errorf("container %s: removed: %w", rec.ID[:12], ErrNotFound)
	}
	defer unlock()
	if rec, err = c.records.Get(rec.ID); err != nil {
		return ExitRuntimeFailed, err
	}
	if rec.State.Status == Running {
		return ExitRuntimeFailed, fmt.Errorf("container %s: %w", rec.ID[:12], ErrRunning)
	}
	o := rec.Options
	var (
		pn     *privateNet
		s      *session.Session
		exited func() error
		// released: the root's server ended and its top layer, not kept
		// (--rm), went with its lease.
		released bool
	)
	// Everything is let go in this order: the network, the root file
	// system, and only then is the exit recorded, so that rm and wait see a
	// container that ended and let go; a --rm container is removed last,
	// whether it ran or not.
	defer func() {
		err = errors.Join(err, pn.stop())
		tl("network down")
		if s != nil {
			if cerr := s.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("container %s: unmount its root file system: %w", rec.ID[:12], cerr))
			} else {
				released = !s.Record().Keep
			}
			tl("root unmounted")
		} else if !rec.AutoRemove {
			// A container strata run made that failed before its root
			// was mounted keeps its image as one create made does: its
			// top layer waits for a start.
			err = errors.Join(err, c.prepareRoot(rec))
		}
		if exited != nil {
			err = errors.Join(err, exited())
			tl("recorded exit")
		}
		if rec.AutoRemove { // --rm: the container and its anonymous volumes
			// A released top layer is gone already: what is left is the rest.
			err = errors.Join(err, c.removeAll(rec, !released), c.removeAnonymousVolumes(rec))
		}
		tl("cleaned up")
	}()
	// The network first: slirp4netns comes up while the root is mounted.
	if o.Network == NetworkPrivate {
		if pn, err = startPrivateNet(rec.ID); err != nil {
			return ExitRuntimeFailed, err
		}
		o.NetNSPath = pn.path
		tl("network started")
	}
	if s, err = c.mountRoot(ctx, rec); err != nil {
		return ExitRuntimeFailed, fmt.Errorf("container %s: root file system: %w", rec.ID[:12], err)
	}
	tl("root mounted", "tree", s.Timing().Tree, "mount", s.Timing().Mount)
	vmounts, err := c.prepareVolumes(rec, s.Dir())
	if err != nil {
		return ExitRuntimeFailed, err
	}
	o.Mounts = append(slices.Clone(o.Mounts), vmounts...)
	tl("volumes ready")
	spec, err := Spec(rec.ID, s.Dir(), filepath.Join(c.records.Dir(rec.ID), "etc"), rec.Config, o)
	if err != nil {
		return ExitRuntimeFailed, err
	}
	if err := WriteBundle(c.bundle(rec.ID), spec); err != nil {
		return ExitRuntimeFailed, err
	}
	tl("bundle written")
	logw, err := OpenLog(c.LogPath(rec.ID))
	if err != nil {
		return ExitRuntimeFailed, err
	}
	defer logw.Close()
	out, errw := logw.Stream("stdout"), logw.Stream("stderr")
	defer out.Close()
	defer errw.Close()
	run := Stdio{Stdin: stdio.Stdin, Stdout: out, Stderr: errw}
	if stdio.Stdout != nil {
		run.Stdout = io.MultiWriter(stdio.Stdout, out)
	}
	if stdio.Stderr != nil {
		run.Stderr = io.MultiWriter(stdio.Stderr, errw)
	}
	if !rec.OpenStdin {
		run.Stdin = nil
	}
	if rec.Options.Tty {
		// A terminal's output is one stream, as docker logs it.
		if stdio.Stdout == nil {
			run.Stdout = out
		}
		var done func()
		if run, done, err = hostConsole(run); err != nil {
			return ExitRuntimeFailed, err
		}
		defer done()
		run.Tty = true
	}
	ports := slices.Clone(rec.Ports)
	if pn != nil {
		if err := pn.up(ports); err != nil {
			return ExitRuntimeFailed, err
		}
		tl("network up")
	}

	self, serr := layerstore.ProcessStart(os.Getpid())
	if serr != nil {
		return ExitRuntimeFailed, serr
	}
	defer startWarm(s.Dir(), spec)() // waited for before the unmount
	// This process serves the container's root for as long as it runs: it
	// hands back what the container's walks of it freed, as a mount server
	// does (its first trim comes after run's first second without GC).
	trimCtx, stopTrim := context.WithCancel(ctx)
	defer stopTrim()
	go session.TrimMemory(trimCtx, 2*time.Second)
	var startErr error
	t0 := time.Now().UTC()
	code, runErr := c.runtime(rec).Run(ctx, rec.ID, c.bundle(rec.ID), run, func(pid int) {
		tl("process started")
		_, startErr = c.records.Update(rec.ID, func(r *Record) error {
			r.Ports = ports
			r.State = State{Status: Running, Pid: pid, StartedAt: time.Now().UTC(), Supervisor: os.Getpid(), SupervisorStart: self}
			return nil
		})
		started(startErr)
		tl("recorded running")
	})
	tl("process exited")
	if startErr != nil {
		runErr = errors.Join(runErr, startErr)
	}
	finished := time.Now().UTC()
	exited = func() error {
		_, err := c.records.Update(rec.ID, func(r *Record) error {
			if r.State.Status != Running { // ended before it was seen running
				r.State = State{StartedAt: t0}
			}
			r.State.Status, r.State.ExitCode, r.State.Pid = Exited, code, 0
			r.State.FinishedAt = finished
			r.State.Supervisor, r.State.SupervisorStart = 0, 0
			if runErr != nil {
				r.State.Error = runErr.Error()
			}
			return nil
		})
		return err
	}
	return code, runErr
}

// mountRoot serves rec's top layer on its rootfs: the kept one that Create
// prepared (or an earlier run kept), or, for a container created to start
// at once (CreateOptions.StartNow) and never started, a new one made now.
// A --rm container's is not kept: its server's end, even a crash, takes it
// away with its lease.
func (c *Containers) mountRoot(ctx context.Context, rec *Record) (*session.Session, error) {
	so := c.sessionOptions(rec)
	start := func() (*session.Session, error) {
		so := so
		so.ID, so.Keep = rec.MountID, !rec.AutoRemove
		return session.Start(ctx, c.st, rec.Image.String(), c.rootfs(rec.ID), so)
	}
	// A created container without a top layer's directory was never
	// started (strata run's): made now, with no look for a lease first. A
	// lease without its directory (a kill in an older strata's Prepare) is
	// refused by Start (ErrExists) and resumed below (NeverServed).
	if _, err := os.Lstat(c.st.MountDir(rec.MountID)); rec.State.Status == Created && errors.Is(err, os.ErrNotExist) {
		if s, err := start(); !errors.Is(err, layerstore.ErrExists) {
			return s, err
		}
	}
	s, err := session.Resume(ctx, c.st, rec.MountID, c.rootfs(rec.ID), so)
	if errors.Is(err, layerstore.ErrNotFound) && rec.State.Status == Created {
		return start()
	}
	return s, err
}

// prepareRoot makes rec's kept top layer, unmounted, unless it is there
// (or its image is gone: the run's own error says so).
func (c *Containers) prepareRoot(rec *Record) error {
	so := c.sessionOptions(rec)
	so.ID = rec.MountID
	_, err := session.Prepare(context.Background(), c.st, rec.Image.String(), so)
	if errors.Is(err, layerstore.ErrExists) || errors.Is(err, layerstore.ErrNotFound) {
		return nil
	}
	return err
}

// timeline returns a function that logs (at debug level) how long after
// its making each phase of a run ended: strata run -D shows where a run's
// time goes.
func (c *Containers) timeline() func(phase string, attrs ...any) {
	if !c.log.Enabled(context.Background(), slog.LevelDebug) {
		return func(string, ...any) {}
	}
	t0 := time.Now()
	return func(phase string, attrs ...any) {
		c.log.Debug("run", append([]any{"phase", phase, "ms", float64(time.Since(t0).Microseconds()) / 1000}, attrs...)...)
	}
}

// Kill sends sig to the running container ref.
func (c *Containers) Kill(ref string, sig syscall.Signal) error {
	rec, err := c.records.Get(ref)
	if err != nil {
		return err
	}
	if rec.State.Status != Running {
		return fmt.Errorf("cannot kill container: %s: container %s is not running: %w", ref, rec.ID[:12], ErrNotRunning)
	}
	return c.runtime(rec).Kill(rec.ID, sig)
}

// Stop sends the container its stop signal, waits up to timeout (nil: its
// own, else 10 s) for it to exit, then kills it. Stopping a container that
// is not running is no error, as with docker.
func (c *Containers) Stop(ctx context.Context, ref string, timeout *int) (*Record, error) {
	rec, err := c.records.Get(ref)
	if err != nil {
		return nil, err
	}
	if rec.State.Status != Running {
		return rec, nil
	}
	sig, err := ParseSignal(rec.StopSignal)
	if err != nil {
		return nil, err
	}
	secs := 10
	if rec.StopTimeout != nil {
		secs = *rec.StopTimeout
	}
	if timeout != nil {
		secs = *timeout
	}
	if err := c.runtime(rec).Kill(rec.ID, sig); err != nil {
		c.log.Debug("stop", "container", rec.ID, "signal", sig, "err", err)
	} else if secs > 0 {
		wctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second)
		done, err := c.Wait(wctx, rec.ID)
		cancel()
		if err == nil {
			return done, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	// Still running after the timeout (or the signal did not reach it).
	return c.kill(ctx, rec)
}

// kill sends the running container rec SIGKILL and returns its record once
// it has exited. A supervisor that does not record the exit within
// stuckAfter (SIGSTOPped, or hung) is killed itself, with what it runs:
// the container is then exited with ExitUnknown, as when its supervisor
// dies, and rm cleans up after both. A supervisor is not killed when the
// signal did not reach the container and the runtime does not know it (a
// runtime state directory other than the one it runs under): that would
// leave the container running with nothing to hold or remove it.
func (c *Containers) kill(ctx context.Context, rec *Record) (*Record, error) {
	rt := c.runtime(rec)
	killErr := rt.Kill(rec.ID, syscall.SIGKILL)
	if killErr != nil {
		c.log.Debug("kill", "container", rec.ID, "err", killErr)
	}
	wctx, cancel := context.WithTimeout(ctx, c.stuckAfter)
	done, err := c.Wait(wctx, rec.ID)
	cancel()
	if err == nil || ctx.Err() != nil {
		return done, err
	}
	// Wait's record may be newer than rec (a restart): the supervisor it
	// names now is the one that is stuck.
	cur, err := c.records.Get(rec.ID)
	if err != nil {
		return nil, err
	}
	st := cur.State
	rt = c.runtime(cur)
	if killErr != nil && st.Supervisor > 0 && !rt.knows(rec.ID) {
		m := layerstore.MountRecord{PID: st.Supervisor, PIDStart: st.SupervisorStart}
		if m.Running() {
			return nil, fmt.Errorf("container %s: its supervisor (pid %d) runs, but the runtime has no container %s under its state directory %s (was it started with another %s?); the supervisor is left running: %w",
				rec.ID[:12], st.Supervisor, rec.ID[:12], rt.root(), "STRATA_RUNC_ROOT", killErr)
		}
	}
	c.log.Warn("the container's supervisor has not recorded its exit: killing it", "container", rec.ID[:12], "supervisor", st.Supervisor, "waited", c.stuckAfter)
	if st.Supervisor > 0 {
		m := layerstore.MountRecord{PID: st.Supervisor, PIDStart: st.SupervisorStart}
		if m.Running() {
			// Its runc too, if the container outlived the signal above.
			rt.forceDelete(rec.ID)
			_ = unix.Kill(st.Supervisor, unix.SIGKILL)
		}
	}
	return c.Wait(ctx, rec.ID) // Current: exited once the supervisor is gone
}

// Wait returns container ref's record once it is not running (its
// supervisor has recorded the exit, or is gone).
func (c *Containers) Wait(ctx context.Context, ref string) (*Record, error) {
	for {
		rec, err := c.records.Get(ref)
		if err != nil {
			return nil, err
		}
		if rec.State.Status != Running { // as it is: Get reads it again when the supervisor is gone
			return rec, nil
		}
		// The supervisor records the exit; poll for it (the supervisor
		// is no child of ours to wait for).
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Remove removes container ref: its top layer, record, log and bundle, and
// with removeVolumes its anonymous volumes. A running container is refused
// unless force, which kills it first.
func (c *Containers) Remove(ctx context.Context, ref string, force, removeVolumes bool) error {
	rec, err := c.records.Get(ref)
	if err != nil {
		return err
	}
	if rec.State.Status == Running {
		if !force {
			return fmt.Errorf("you cannot remove a running container %s. Stop the container before attempting removal or force remove: %w", rec.ID, ErrRunning)
		}
		if rec, err = c.kill(ctx, rec); err != nil {
			return err
		}
	}
	// Under the run lock: a start that began after the record was read
	// above is not torn down half-way (the runtime's delete first killed
	// it, and the top layer's removal then failed: it was in use).
	unlock, err := c.removeLock(ctx, rec, force)
	if err != nil {
		return err
	}
	defer unlock()
	if rec, err = c.records.Get(rec.ID); err != nil {
		return err
	}
	err = c.remove(rec)
	if removeVolumes {
		err = errors.Join(err, c.removeAnonymousVolumes(rec))
	}
	return err
}

// validID reports whether id is a container ID: 64 lowercase hex digits.
func validID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// owner is what the leases of container id's top layer are kept by.
func owner(id string) string { return "container:" + id }

// remove deletes what rec holds: runtime state, top layer, then the record.
// A top layer that cannot be removed keeps the record, so rm can be run
// again.
func (c *Containers) remove(rec *Record) error { return c.removeAll(rec, true) }

// removeAll is remove, of the top layer too unless top is false (a --rm
// run's unmount released it).
func (c *Containers) removeAll(rec *Record, top bool) error {
	c.runtime(rec).forceDelete(rec.ID)
	if top && rec.MountID != "" {
		if err := session.Remove(c.st, rec.MountID); err != nil && !errors.Is(err, layerstore.ErrNotFound) {
			return fmt.Errorf("container %s: its top layer: %w", rec.ID[:12], err)
		}
	}
	return c.removeRest(rec.ID)
}

// removeRest deletes what is left of container id once its top layer is
// gone: a mountpoint and network namespace a dead supervisor left, and its
// directory with the record.
func (c *Containers) removeRest(id string) error {
	var errs []error
	// A mountpoint and a network namespace a dead supervisor left behind.
	_ = unix.Unmount(c.rootfs(id), unix.MNT_DETACH)
	if err := removeNetns(netnsName(id)); err != nil {
		errs = append(errs, err)
	}
	if err := c.records.Remove(id); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RemoveOrphans removes the top layers whose container is gone (a crash
// between a lease and its record, or in the middle of rm) and what else
// such a container left, and returns the containers' IDs and the space
// their top layers took.
func (c *Containers) RemoveOrphans() (ids []string, size int64, err error) {
	ms, err := c.st.Mounts()
	if err != nil {
		return nil, 0, err
	}
	var errs []error
	for _, m := range ms {
		id, ok := strings.CutPrefix(m.Owner, "container:")
		if !ok || !validID(id) || m.Running() {
			continue
		}
		if _, err := c.records.Get(id); !errors.Is(err, ErrNotFound) {
			continue
		}
		u, _ := c.st.MountUsage(m.ID)
		if err := session.Remove(c.st, m.ID); err != nil && !errors.Is(err, layerstore.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		size += u
		_ = unix.Unmount(c.rootfs(id), unix.MNT_DETACH)
		if err := errors.Join(removeNetns(netnsName(id)), os.RemoveAll(c.records.Dir(id))); err != nil {
			errs = append(errs, err)
			continue
		}
		ids = append(ids, id)
	}
	return ids, size, errors.Join(errs...)
}

// ParseSignal reads a signal as docker takes it: SIGTERM, TERM or 15.
func ParseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return syscall.SIGTERM, nil
	}
	if v, err := strconv.Atoi(s); err == nil {
		if v > 0 && v < 65 {
			return syscall.Signal(v), nil
		}
		return 0, fmt.Errorf("invalid signal: %s", s)
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("invalid signal: %s", s)
}
