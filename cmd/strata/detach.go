package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/strata-dev/strata/internal/mountserver"
)

// detach starts this binary with the global flags and args as a child in a
// session of its own (a server that outlives the command), its output
// appended to logPath and file descriptor 3 a pipe it reports on. It returns
// the first line the child reports. A child that reports nothing has ended:
// what it wrote to the log, or its exit error, is returned.
func detach(g *globals, logPath string, args ...string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	all := []string{"--root", g.root, "--lock-timeout", strconv.Itoa(g.lockTimeout)}
	if g.debug {
		all = append(all, "--debug")
	}
	return startServer(context.Background(), self, append(all, args...), logPath)
}

// startServer is detach of program bin with args as they are, in "/"
// with serverEnv. A child
// that ends without a word or a log line is "BIN (pid N) ended: STATUS".
// File descriptor 3 is a socket: a "ready ..." line is answered "ok", and
// when ctx ends before the child reports (Ctrl-C) the socket's write side
// is closed, which tells a mount server to give up the mount (or undo it);
// startServer then waits for the child to let go and returns
// mountserver.ErrInterrupted.
func startServer(ctx context.Context, bin string, args []string, logPath string) (string, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	start, _ := logf.Seek(0, io.SeekEnd) // what the child writes begins here
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	theirs := os.NewFile(uintptr(fds[1]), "report")
	ours := os.NewFile(uintptr(fds[0]), "report")
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return "", err
	}
	defer conn.Close()
	c := exec.Command(bin, args...)
	c.Dir, c.Env = "/", serverEnv(os.Environ())
	c.Stdout, c.Stderr = logf, logf
	c.ExtraFiles = []*os.File{theirs}
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		theirs.Close()
		return "", err
	}
	theirs.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.(*net.UnixConn).CloseWrite() })
	br := bufio.NewReader(conn)
	line, _ := br.ReadString('\n')
	if !stop() {
		for {
			if _, err := br.ReadString('\n'); err != nil {
				break
			}
		}
		_ = c.Process.Release()
		return "", mountserver.ErrInterrupted
	}
	if line = strings.TrimSpace(line); line != "" {
		if strings.HasPrefix(line, "ready ") {
			_, _ = conn.Write([]byte("ok\n"))
		}
		_ = c.Process.Release()
		return line, nil
	}
	werr := c.Wait()
	b, _ := os.ReadFile(logPath)
	if int64(len(b)) >= start {
		b = b[start:]
	}
	if msg := strings.TrimSpace(string(b)); msg != "" {
		return "", errors.New(msg)
	}
	if werr != nil {
		return "", &endedError{bin, c.Process.Pid, werr}
	}
	return "", nil
}

// serverEnv is what of env a mount server gets: it outlives the command
// that starts it and may serve others' mounts, so it keeps only what it
// reads (STRATA_*, PATH for fusermount3, TMPDIR, HOME, the Go runtime's
// settings), not the caller's whole environment. Its working directory is
// "/" for the same reason: the caller's would stay busy while it lives.
func serverEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "STRATA_"), k == "PATH", k == "TMPDIR", k == "HOME",
			k == "GOTRACEBACK", k == "GODEBUG", k == "GOCOVERDIR", k == "GOMAXPROCS", k == "GOMEMLIMIT", k == "GOGC":
			out = append(out, kv)
		}
	}
	return out
}

// endedError is a child that ended before it reported or logged a word.
type endedError struct {
	bin string
	pid int
	err error
}

func (e *endedError) Error() string { return fmt.Sprintf("%s (pid %d) ended: %v", e.bin, e.pid, e.err) }
func (e *endedError) Unwrap() error { return e.err }

// reporter is the detached child's side of detach: report writes one line
// on fd (0: nowhere) and closes it. An fd that is no pipe or socket gets
// nothing, and stderr (the log) says why.
func reporter(fd int) func(string) {
	r, err := mountserver.Reporter(fd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "strata:", err)
		return func(string) {}
	}
	return r
}
