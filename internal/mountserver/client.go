package mountserver

// The client's side of a shared server: "strata mount -d" asks the servers
// of its store, namespace and installation for a mount, and starts a new
// one where none has room.

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrInterrupted is a Mount given up by its context (Ctrl-C): no mount is
// left behind.
var ErrInterrupted = errors.New("interrupted: no mount was made (or it was undone)")

// errRetry is a server that made nothing of the request (full, exiting,
// gone, of another build): ask another.
var errRetry = errors.New("ask another server")

// replyWait is how long a server has to answer a request (taken, full,
// exiting) before the client takes it to have made nothing.
const replyWait = 3 * time.Second

// maxTries bounds the rounds of asking and starting servers.
const maxTries = 64

// Client asks shared servers of one store for mounts.
type Client struct {
	Root string // the store, absolute
	Key  string // NSKey: the servers this client may ask
	// Spawn starts a shared server listening on sock, its own log at
	// LogOf(sock), and returns once it listens (it says "listening").
	Spawn func(ctx context.Context, sock string) error
}

// Mount asks a shared server for mount c (c.Root, Dir absolute; ID set),
// starting one if none has room, and returns the pid of the server that
// serves it once it is ready. Starting servers is serialized by a lock
// in the servers' directory, so many clients at once start no more than
// they fill.
func (cl *Client) Mount(ctx context.Context, c Config) (int, error) {
	dir := ServersDir(cl.Root)
	if err := serversDir(dir); err != nil {
		return 0, err
	}
	req, err := json.Marshal(newRequest(c))
	if err != nil {
		return 0, err
	}
	for range maxTries {
		socks, err := cl.sockets(dir)
		if err != nil {
			return 0, err
		}
		for _, s := range socks {
			pid, err := cl.ask(ctx, s, req, c.Session.ID)
			if !errors.Is(err, errRetry) {
				return pid, err
			}
		}
		if err := ctx.Err(); err != nil {
			return 0, ErrInterrupted
		}
		if err := cl.spawn(ctx, dir, socks); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("no mount server in %s took the mount after %d tries", dir, maxTries)
}

// spawn starts a server, under the lock, unless the servers changed since
// socks was read (one may have room then); it removes the sockets of
// servers that are gone.
func (cl *Client) spawn(ctx context.Context, dir string, socks []string) error {
	unlock, err := lockFile(ctx, filepath.Join(dir, cl.Key+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	now, err := cl.sockets(dir)
	if err != nil || !slices.Equal(now, socks) {
		return err
	}
	for _, s := range now {
		// Under the lock no server is between bind and listen: a refused
		// connection is a server that is gone (killed).
		if c, err := dialUnix(s); errors.Is(err, syscall.ECONNREFUSED) {
			_ = os.Remove(s)
		} else if err == nil {
			c.Close()
		}
	}
	pruneLogs(dir, cl.Key)
	var b [4]byte
	_, _ = rand.Read(b[:])
	return cl.Spawn(ctx, filepath.Join(dir, cl.Key+"-"+hex.EncodeToString(b[:])+".sock"))
}

// keptLogs is how many logs of servers that are gone are kept for each
// key: the newest, which hold what a crash said (a clean exit takes its
// log along when it is empty).
const keptLogs = 8

// pruneLogs removes the logs of key's servers that are gone (their socket
// is), the empty ones and all but the newest keptLogs others. Under the
// lock no server is between its start, which makes its log, and listen.
func pruneLogs(dir, key string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type log struct {
		path string
		mod  int64
	}
	var left []log
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, key+"-") || !strings.HasSuffix(name, ".log") {
			continue
		}
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(strings.TrimSuffix(p, ".log") + ".sock"); err == nil {
			continue // its server's
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if fi.Size() == 0 {
			_ = os.Remove(p)
			continue
		}
		left = append(left, log{p, fi.ModTime().UnixNano()})
	}
	slices.SortFunc(left, func(a, b log) int { return cmp.Compare(b.mod, a.mod) })
	for _, l := range left[min(len(left), keptLogs):] {
		_ = os.Remove(l.path)
	}
}

// sockets lists the sockets of this client's servers, in name order.
func (cl *Client) sockets(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), cl.Key+"-") && strings.HasSuffix(e.Name(), ".sock") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// ask asks the server at sock for the mount of req (ID id).
func (cl *Client) ask(ctx context.Context, sock string, req []byte, id string) (int, error) {
	conn, err := dialUnix(sock)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errRetry, err) // gone (or not yet there)
	}
	defer conn.Close()
	cred, pidfd, err := peerCred(conn)
	if err != nil {
		return 0, err
	}
	if pidfd >= 0 {
		unix.Close(pidfd)
	}
	if int(cred.Uid) != os.Geteuid() {
		return 0, fmt.Errorf("%s is served by uid %d, not this user: remove it", sock, cred.Uid)
	}
	pid := int(cred.Pid)
	// Until it says taken, a server that does not answer (stopped, hung)
	// within replyWait made nothing: ask another. A Ctrl-C closes the
	// write side, which tells a server that took the mount to give it up
	// (and one that has not read the request yet to make nothing), and
	// waits for it to have done so.
	_ = conn.SetReadDeadline(time.Now().Add(replyWait))
	stop := context.AfterFunc(ctx, func() { _ = conn.CloseWrite() })
	defer stop()
	if _, err := conn.Write(append(req, '\n')); err != nil {
		return 0, fmt.Errorf("%w: %v", errRetry, err)
	}
	br := bufio.NewReader(conn)
	line, err := readLine(br)
	switch {
	case err != nil, line == replyFull, line == replyExiting, strings.HasPrefix(line, replyOther+": "):
		return 0, errRetry // nothing made: it exits, is full, went, does not answer, or is not of this caller's identity
	case IsRefusal(line, nil):
		return 0, errRetry // another build's: one of ours is started
	case strings.HasPrefix(line, "error: "):
		return 0, errors.New(strings.TrimPrefix(line, "error: "))
	case line != replyTaken:
		return 0, fmt.Errorf("the mount server (pid %d) said %q, not %q", pid, line, replyTaken)
	}
	// Taken: from here the server makes the mount, which may wait for the
	// store's lock as long as it is told to.
	_ = conn.SetReadDeadline(time.Time{})
	line, err = readLine(br)
	if !stop() {
		for err == nil {
			_, err = readLine(br)
		}
		return 0, ErrInterrupted
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("the mount server (pid %d) ended before the mount was ready: %w", pid, err)
	case line == "ready "+id:
		if _, err := conn.Write([]byte("ok\n")); err != nil {
			return 0, fmt.Errorf("the mount server (pid %d) ended as the mount was ready: %w", pid, err)
		}
		return pid, nil
	case strings.HasPrefix(line, "error: "):
		return 0, errors.New(strings.TrimPrefix(line, "error: "))
	}
	return 0, fmt.Errorf("the mount server (pid %d) said %q, not \"ready %s\"", pid, line, id)
}

// readLine reads one line without its newline; a line cut short is an
// error.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// serversDir makes the servers' directory, mode 0700, and refuses one
// another user owns or others may enter.
func serversDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: the mount servers' directory must be a directory of uid %d, mode 0700 (it is %v, uid %d)", dir, os.Geteuid(), fi.Mode(), st.Uid)
	}
	return nil
}

// lockFile takes an exclusive flock of path, or gives up when ctx ends.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	got := make(chan error, 1)
	go func() {
		for {
			err := unix.Flock(fd, unix.LOCK_EX)
			if err != unix.EINTR {
				got <- err
				return
			}
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "flock", Path: path, Err: err}
		}
		return func() { unix.Close(fd) }, nil
	case <-ctx.Done():
		// The flock goes with the descriptor: closed here, or at exit.
		go func() {
			<-got
			unix.Close(fd)
		}()
		return nil, ErrInterrupted
	}
}
