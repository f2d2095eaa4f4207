package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Exit statuses of a run that did not get to run the command, as docker's.
const (
	ExitRuntimeFailed = 125 // strata or the runtime failed
	ExitCannotInvoke  = 126 // the command exists but cannot be run
	ExitNotFound      = 127 // the command does not exist
)

// Runtime runs bundles with an OCI runtime binary.
type Runtime struct {
	// Binary is the runtime's path or name. Default "runc".
	Binary string
	// Root is the runtime's state directory (runc --root). Default
	// /run/strata/runc. A container keeps the one it was made with
	// (Record.RuncRoot), which its later runtime calls use instead.
	Root string
}

// StartError is a run that failed before the command ran. Code is
// ExitNotFound, ExitCannotInvoke or ExitRuntimeFailed.
type StartError struct {
	Code int
	Op   string // "create" (a run) or "exec"
	Msg  string // what the runtime said
}

// Error is docker's shape: OCI runtime create failed: ...: unknown.
func (e *StartError) Error() string {
	return fmt.Sprintf("OCI runtime %s failed: %s: unknown", e.Op, e.Msg)
}

// Stdio are the process's standard streams; nil means /dev/null.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Tty: the process has a terminal (runc is its console's master), which
	// runc is asked to size again once the process exists: runc's own
	// sizing at start can come before it holds the console.
	Tty bool
}

// WriteBundle writes spec as dir/config.json, the bundle a runtime reads.
func WriteBundle(dir string, spec *specs.Spec) error {
	b, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".config.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "config.json"))
}

// Run runs the bundle in dir as container id in the foreground and returns
// the command's exit status: its own, or 128+N after signal N. A run that
// fails before the command runs returns a *StartError. started, if not nil,
// is called with the container's pid once the runtime knows the container
// (from then on Kill reaches it). The container is deleted from the
// runtime's state when Run returns. Cancelling ctx kills it.
func (r *Runtime) Run(ctx context.Context, id, dir string, stdio Stdio, started func(pid int)) (int, error) {
	// runc run deletes the container itself; a leftover (a runc killed
	// mid-way) must not block the name.
	defer r.forceDelete(id)
	stop := context.AfterFunc(ctx, func() { _ = r.Kill(id, syscall.SIGKILL) })
	defer stop()
	// A cancel before the container existed found nothing to kill: kill it
	// as soon as it is there.
	onStart := func(pid int) {
		if ctx.Err() != nil {
			_ = r.Kill(id, syscall.SIGKILL)
		}
		if started != nil {
			started(pid)
		}
	}
	return r.foreground(dir, stdio, onStart, "run", "--bundle", dir, id)
}

// Exec runs process (written to dir/FILE) in the running container id, in
// the foreground, and returns its status as Run does; a command that cannot
// be found or run is ExitCannotInvoke, as docker exec says.
func (r *Runtime) Exec(id, processFile, dir string, stdio Stdio) (int, error) {
	code, err := r.foreground(dir, stdio, nil, "exec", "--process", processFile, id)
	var se *StartError
	if errors.As(err, &se) && se.Code == ExitNotFound {
		se.Code, code = ExitCannotInvoke, ExitCannotInvoke
	}
	return code, err
}

// foreground runs runc with args (a --pid-file in dir is added after the
// subcommand), its log in dir, and maps the outcome to an exit status.
func (r *Runtime) foreground(dir string, stdio Stdio, started func(pid int), sub string, args ...string) (int, error) {
	logPath := filepath.Join(dir, "runtime.log")
	pidPath := filepath.Join(dir, sub+".pid")
	_ = os.Remove(logPath)
	_ = os.Remove(pidPath)
	all := r.args(append([]string{"--log", logPath, "--log-format", "json", sub, "--pid-file", pidPath}, args...)...)
	op := "create"
	if sub == "exec" {
		op = "exec"
	}
	// Until the process exists, whatever comes out is the runtime's own
	// (runc prints its error on the process's stderr): held back, and
	// dropped if the start fails, as the error is returned instead.
	out, errw := &gate{w: stdio.Stdout}, &gate{w: stdio.Stderr}
	c := exec.Command(r.binary(), all...)
	c.Stdin, c.Stdout, c.Stderr = stdio.Stdin, out.writer(), errw.writer()
	if err := c.Start(); err != nil {
		return ExitRuntimeFailed, &StartError{Code: ExitRuntimeFailed, Op: op, Msg: err.Error()}
	}
	exited := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if pid, ok := waitPidFile(pidPath, exited); ok {
			out.open()
			errw.open()
			if stdio.Tty {
				_ = c.Process.Signal(syscall.SIGWINCH) // runc sizes the console from its stdin
			}
			if started != nil {
				started(pid)
			}
		}
	}()
	err := c.Wait()
	close(exited)
	<-watched
	msg := runtimeError(logPath)
	if msg == "" {
		out.open()
		errw.open()
	}
	if msg != "" {
		se := &StartError{Code: ExitRuntimeFailed, Op: op, Msg: msg}
		switch {
		case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
			se.Code = ExitNotFound
		case strings.Contains(msg, "permission denied"), strings.Contains(msg, "exec format error"):
			se.Code = ExitCannotInvoke
		}
		return se.Code, se
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return ExitRuntimeFailed, &StartError{Code: ExitRuntimeFailed, Op: op, Msg: err.Error()}
	}
	return 0, nil
}

// gate holds what is written to w back until open; what it holds then is
// passed on. A nil w stays nil (the process gets /dev/null).
type gate struct {
	w      io.Writer
	mu     sync.Mutex
	opened bool
	held   bytes.Buffer
}

func (g *gate) writer() io.Writer {
	if _, ok := g.w.(*os.File); ok || g.w == nil {
		return g.w // a terminal or file the process gets as it is
	}
	return g
}

func (g *gate) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		return g.held.Write(p)
	}
	return g.w.Write(p)
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened && g.w != nil {
		_, _ = g.held.WriteTo(g.w)
	}
	g.opened = true
}

// waitPidFile returns the pid runc writes to path once the container
// exists, or false if the runtime exits first. runc writes the file whole
// (a rename), so a file that exists is complete. It waits on inotify
// events of the file's directory, not by polling.
func waitPidFile(path string, exited <-chan struct{}) (int, bool) {
	read := func() (int, bool) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, false
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid, err == nil
	}
	events, err := watchDir(filepath.Dir(path))
	if err != nil { // no inotify: look every few milliseconds
		for {
			if pid, ok := read(); ok {
				return pid, true
			}
			select {
			case <-exited:
				return read() // it may have come and gone between two looks
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	defer events.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-exited:
			events.SetReadDeadline(time.Now()) // ends the Read below
		case <-stop:
		}
	}()
	buf := make([]byte, 4096)
	for {
		if pid, ok := read(); ok {
			return pid, true
		}
		if _, err := events.Read(buf); err != nil {
			return read() // the runtime exited
		}
	}
}

// watchDir returns an inotify descriptor watching dir for files renamed
// into it or written; its reads block (in Go's poller) until one is.
func watchDir(dir string) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "inotify:"+dir), nil
}

// Kill sends sig to the container's init process.
func (r *Runtime) Kill(id string, sig syscall.Signal) error {
	out, err := exec.Command(r.binary(), r.args("kill", id, fmt.Sprint(int(sig)))...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s kill %s: %w: %s", r.binary(), id, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// forceDelete removes container id from the runtime's state, killing what
// is left of it. A container the runtime has no state for (runc run
// deleted it) costs no runc process.
func (r *Runtime) forceDelete(id string) {
	if _, err := os.Lstat(filepath.Join(r.root(), id)); errors.Is(err, os.ErrNotExist) {
		return
	}
	_ = exec.Command(r.binary(), r.args("delete", "--force", id)...).Run()
}

// knows reports whether the runtime has state for container id under its
// root (runc keeps <root>/<id>/state.json while it knows one).
func (r *Runtime) knows(id string) bool {
	_, err := os.Lstat(filepath.Join(r.root(), id))
	return err == nil
}

func (r *Runtime) binary() string {
	if r.Binary == "" {
		return "runc"
	}
	return r.Binary
}

func (r *Runtime) root() string {
	if r.Root == "" {
		return "/run/strata/runc"
	}
	return r.Root
}

func (r *Runtime) args(a ...string) []string {
	return append([]string{"--root", r.root()}, a...)
}

// runtimeError returns the last error the runtime logged, "" if none.
func runtimeError(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Level == "error" {
			last = e.Msg
		}
	}
	return last
}
