package mountserver

// A shared server: one process that serves many mounts of a store, each in
// goroutines of its own with exactly what a server of one mount runs
// (serveMount) with a store handle of its own, and one TrimMemory loop for
// them all.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// DefaultMaxMounts is how many mounts a shared server serves at most: a
// crash of one server takes down no more than these.
const DefaultMaxMounts = 16

// DefaultIdle is how long a shared server waits, once its last mount has
// ended, for another before it exits.
const DefaultIdle = time.Second

// ServersDir is where a store's shared servers have their sockets and logs.
func ServersDir(root string) string { return filepath.Join(root, "servers") }

// request is what a client asks a shared server for: one mount. Flags
// holds BoolFlags by name.
type request struct {
	Protocol int             `json:"protocol"`
	Root     string          `json:"root"`
	Ref      string          `json:"ref"`
	Dir      string          `json:"dir"`
	ID       string          `json:"id"`
	Flags    map[string]bool `json:"flags"`
	// LockTimeout is the asker's --lock-timeout, for this mount's waits
	// for the store (the server's own was its first asker's).
	LockTimeout time.Duration `json:"lock_timeout"`
}

func newRequest(c Config) request {
	r := request{Protocol: Protocol, Root: c.Root, Ref: c.Ref, Dir: c.Dir, ID: c.Session.ID, Flags: map[string]bool{}, LockTimeout: c.LockTimeout}
	for _, b := range BoolFlags {
		r.Flags[b.Name] = *b.Field(&c)
	}
	return r
}

func (r request) config() Config {
	c := Config{Root: r.Root, Ref: r.Ref, Dir: r.Dir, LockTimeout: r.LockTimeout}
	c.Session.ID = r.ID
	for _, b := range BoolFlags {
		*b.Field(&c) = r.Flags[b.Name]
	}
	return c
}

// The replies of a shared server, each one line: first taken (it makes the
// mount), full (it has no room) or exiting (it is about to exit), then
// "ready ID" or "error: ...". Before taken nothing was made: the client asks
// another server.
const (
	replyTaken   = "taken"
	replyFull    = "full"
	replyExiting = "exiting"
	// "other: why" is a caller of another identity than the server's
	// (what NSKey names, but for the uid): nothing made, and a server
	// the caller starts is of its own. Every other refusal ("error: ...")
	// is final.
	replyOther = "other"
)

// maxRequest bounds a request line.
const maxRequest = 64 << 10

// shared is a running shared server.
type shared struct {
	root string
	max  int
	idle time.Duration
	path string // the socket
	ln   *net.UnixListener
	log  *slog.Logger
	// beforeExit, if set, runs when the server has decided to exit for
	// want of mounts, before it removes its socket (tests).
	beforeExit func()

	mu      sync.Mutex
	n       int // mounts served or being made
	closing bool
	gen     int // of the idle timer: a timer of an older one does nothing
}

// RunShared is a shared mount server: it opens the store, listens on
// c.Listen, says "listening" on rep, and serves the mounts strata asks for
// (Client), at most c.MaxMounts at once, each as Run would. It exits once
// it has served no mount for DefaultIdle (c.Idle), removing its socket;
// SIGINT and SIGTERM unmount every mount it serves, as for one.
func RunShared(ctx context.Context, c Config, rep *Report) error {
	err := runShared(ctx, c, rep, nil)
	if err != nil {
		rep.Say("error: " + err.Error())
	}
	return err
}

func runShared(ctx context.Context, c Config, rep *Report, beforeExit func()) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := Logger(c.Debug)
	root, err := filepath.Abs(c.Root)
	if err != nil {
		return err
	}
	st, err := OpenStore(root, c.LockTimeout, log, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	ln, err := listenUnix(c.Listen)
	if err != nil {
		return err
	}
	s := &shared{root: root, max: max(c.MaxMounts, 1), idle: c.Idle, path: c.Listen, ln: ln, log: log, beforeExit: beforeExit}
	if s.idle <= 0 {
		s.idle = DefaultIdle
	}
	rep.Say("listening")
	go trimMemory(ctx)
	err = s.serve(ctx)
	// A clean exit takes its log along if it logged nothing; a crash's
	// stays for whoever looks into it.
	if log := LogOf(c.Listen); err == nil {
		if fi, serr := os.Stat(log); serr == nil && fi.Size() == 0 {
			_ = os.Remove(log)
		}
	}
	return err
}

// LogOf is where the shared server of socket sock logs: beside it.
func LogOf(sock string) string { return strings.TrimSuffix(sock, ".sock") + ".log" }

func (s *shared) serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, s.shut)
	defer stop()
	s.mu.Lock()
	s.armIdle()
	s.mu.Unlock()
	var wg sync.WaitGroup
	var err error
	for {
		conn, aerr := s.ln.AcceptUnix()
		if aerr != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if !closing {
				err = aerr
				s.log.Error("mount server: accept", "err", aerr)
				s.shut()
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, conn)
		}()
	}
	wg.Wait()
	return err
}

// shut stops taking mounts: the socket goes, then the listener (a client
// that connected in between is refused and asks another server).
func (s *shared) shut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutLocked()
}

func (s *shared) shutLocked() {
	if s.closing {
		return
	}
	s.closing = true
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("mount server: remove socket", "err", err)
	}
	s.ln.Close()
}

// armIdle starts the wait for a mount when there is none (s.mu held).
func (s *shared) armIdle() {
	s.gen++
	if s.n > 0 || s.closing {
		return
	}
	gen := s.gen
	time.AfterFunc(s.idle, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if gen != s.gen || s.n > 0 || s.closing {
			return
		}
		if s.beforeExit != nil {
			s.beforeExit()
		}
		s.shutLocked()
	})
}

// take reserves room for a mount, or says why there is none.
func (s *shared) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		return replyExiting
	case s.n >= s.max:
		return replyFull
	}
	s.n++
	s.gen++ // no idle exit now
	return replyTaken
}

func (s *shared) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	s.armIdle()
}

// handle serves one client's request.
func (s *shared) handle(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	say := func(line string) { fmt.Fprintln(conn, line) }
	// The request first, then the answer: a refusal written before it
	// was read met a client still writing it (EPIPE: "ask another").
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(io.LimitReader(conn, maxRequest))
	line, err := br.ReadBytes('\n')
	if err != nil {
		return // gone before it asked
	}
	if _, err := checkPeer(conn); err != nil {
		s.log.Warn("mount server: refused", "err", err)
		if errors.Is(err, errOther) {
			say(replyOther + ": refused by the mount server: " + err.Error())
		} else {
			say("error: refused by the mount server: " + err.Error())
		}
		return
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		say(fmt.Sprintf("error: %s: bad request: %v", Binary, err))
		return
	}
	if err := CheckProtocol(req.Protocol); err != nil {
		say("error: " + err.Error())
		return
	}
	if !filepath.IsAbs(req.Root) || !filepath.IsAbs(req.Dir) {
		say(fmt.Sprintf("error: %s: the store and the mountpoint must be absolute paths (got %q, %q)", Binary, req.Root, req.Dir))
		return
	}
	if err := s.sameStore(req.Root); err != nil {
		say("error: " + err.Error())
		return
	}
	if r := s.take(); r != replyTaken {
		say(r)
		return
	}
	defer s.done()
	_ = conn.SetReadDeadline(time.Time{})
	say(replyTaken)
	c := req.config()
	rep := newAnswered(conn, bufio.NewReader(io.MultiReader(br, conn)))
	logf, err := os.OpenFile(filepath.Join(layerstore.MountDirIn(s.root, c.Session.ID), "server.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		rep.Say("error: the mount's log: " + err.Error())
		return
	}
	defer logf.Close()
	if err := s.serveOne(ctx, c, logf, rep); err != nil {
		rep.Say("error: " + err.Error())
		if !errors.Is(err, ErrGaveUp) {
			fmt.Fprintln(logf, "Error:", err)
		}
	}
}

// serveOne serves mount c, its messages to its own log, as Run does.
func (s *shared) serveOne(ctx context.Context, c Config, logw io.Writer, rep *Report) error {
	dir, err := Check(c.Dir, c.Session.ReadOnly, c.Force)
	if err != nil {
		return err
	}
	o := c.Session
	o.Logger = slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o.OnBusy = func(dir string, _ error) {
		fmt.Fprintln(logw, "strata: "+BusySentence(dir, Holders(dir)))
	}
	// A handle of its own: the asker's lock timeout, and no mutex shared
	// with the other mounts' store calls (a slow deletion of one top
	// layer would hold up the others').
	st, err := OpenStore(s.root, c.LockTimeout, o.Logger, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	err = serveMount(ctx, st, c.Ref, dir, o, rep.Ready)
	s.settle(ctx, st, c.Session.ID, dir, logw)
	return err
}

// settle retries, with backoff, the release of mount id that its session
// could not do once the mount had ended (RemoveMount failed: the store's
// lock wait timed out, say). A lease that names a server that lives on
// shows the mount starting for good, and umount and gc wait on it; so the
// server stays until it is released. It gives up when ctx ends (SIGTERM):
// the server exits then, and its dead pid lets umount and gc clean up.
func (s *shared) settle(ctx context.Context, st *layerstore.Store, id, dir string, logw io.Writer) {
	me := os.Getpid()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		rec, err := st.Mount(id)
		if errors.Is(err, layerstore.ErrNotFound) || err == nil && rec.PID != me {
			return // released (or never leased)
		}
		if err == nil {
			if mi, merr := session.ReadMountinfo(); merr != nil {
				err = merr
			} else if _, mounted := session.Mounted(mi, dir); mounted {
				return // still served: its top layer is not ours to take
			} else if rec.Keep {
				stopped := *rec
				stopped.PID, stopped.PIDStart = 0, 0
				err = st.UpdateMount(stopped)
			} else {
				err = st.RemoveMount(id)
			}
			if err == nil {
				return
			}
		}
		fmt.Fprintf(logw, "strata: the mount's lease is not released yet (tries again in %v): %v\n", wait, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// sameStore refuses a request for another store than this server's.
func (s *shared) sameStore(root string) error {
	a, err := os.Stat(root)
	if err != nil {
		return err
	}
	b, err := os.Stat(s.root)
	if err != nil {
		return err
	}
	if !os.SameFile(a, b) {
		return fmt.Errorf("this mount server serves the store %s, not %s", s.root, root)
	}
	return nil
}
