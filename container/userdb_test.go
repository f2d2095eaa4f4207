package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// An image's /etc/passwd that is not a regular file is refused with an
// error naming it, at once: a FIFO's open blocked the run for good, a
// device's open may act. One larger than userDBMax is refused too, and a
// symlink out of the root resolves inside it (the host's file is never
// read).
func TestExecUser_UserDBNotARegularFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mknod of a device")
	}
	host := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(host, []byte("hostonly:x:4242:4242::/hostleak:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		make       func(p string) error
	}{
		{"fifo", "/etc/passwd: a FIFO, not a regular file", func(p string) error { return unix.Mkfifo(p, 0o644) }},
		{"device", "/etc/passwd: a character device, not a regular file", func(p string) error {
			return unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3)))
		}},
		{"socket", "/etc/passwd: a socket", func(p string) error {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Bind(fd, &unix.SockaddrUnix{Name: p})
		}},
		{"directory", "/etc/passwd: a directory", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"huge", "/etc/passwd: 16777217 bytes, more than 16777216", func(p string) error {
			if err := os.WriteFile(p, []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
				return err
			}
			return os.Truncate(p, userDBMax+1)
		}},
		{"symlink out of the root", "unable to find user hostonly", func(p string) error {
			return os.Symlink("../../../../../../.."+host, p)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.make(filepath.Join(root, "etc/passwd")); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				eu, err := execUser(root, "hostonly")
				if err == nil {
					err = errors.New("no error, user " + eu.Home)
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("execUser: %v, want %q", err, tc.want)
				}
			case <-time.After(20 * time.Second): // a hang, not a timing
				// Unblock the FIFO's open so the goroutine ends.
				if f, err := os.OpenFile(filepath.Join(root, "etc/passwd"), os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
				t.Fatalf("execUser on a %s /etc/passwd did not return", tc.name)
			}
		})
	}
}

// strata run of an image whose /etc/passwd is a FIFO (made in a container
// and committed) fails at once with exit 125 naming the file, and rm
// leaves the store clean.
func TestContainers_RunImageWithFIFOPasswd(t *testing.T) {
	c, st := openContainers(t)
	ctx := context.Background()
	maker, err := c.Create(ctx, "demo", CreateOptions{Options: Options{Network: NetworkNone,
		Cmd: []string{"-c", "rm /etc/passwd && mkfifo /etc/passwd"}}})
	if err != nil {
		t.Fatal(err)
	}
	if out, code := runFG(t, c, maker.ID); code != 0 {
		t.Fatalf("making the FIFO: %q, exit %d", out, code)
	}
	if _, err := c.Commit(ctx, maker.ID, CommitOptions{Names: []string{"fifopasswd:latest"}}); err != nil {
		t.Fatal(err)
	}
	rec, err := c.Create(ctx, "fifopasswd", CreateOptions{StartNow: true, Options: Options{Network: NetworkNone, Cmd: []string{"-c", "echo ran"}}})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := c.Run(ctx, rec.ID, Stdio{}, nil)
		done <- result{code, err}
	}()
	select {
	case r := <-done:
		if r.code != ExitRuntimeFailed || !errors.Is(r.err, layerstore.ErrInvalid) || !strings.Contains(fmtErr(r.err), "/etc/passwd: a FIFO") {
			t.Errorf("run: exit %d, %v; want %d and an error naming /etc/passwd", r.code, r.err, ExitRuntimeFailed)
		}
	case <-time.After(60 * time.Second): // a hang, not a timing
		t.Fatal("run of an image whose /etc/passwd is a FIFO did not return")
	}
	for _, id := range []string{rec.ID, maker.ID} {
		if err := c.Remove(ctx, id, false, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.RemoveImage("fifopasswd", false); err != nil {
		t.Fatal(err)
	}
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after rm", n)
	}
	storetest.Check(t, st)
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
