// Package dockertest runs a real dockerd (Debian's docker.io, 20.10) for
// tests that compare strata's output with docker's for the same images.
//
// Each Daemon has its own data-root, exec-root, pidfile and unix socket
// under a directory of its own, no iptables and no bridge, so it disturbs
// nothing else on the machine; Close stops it and removes that directory.
// Nothing here is a mock: the docker CLI talks to the daemon over its socket.
package dockertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrUnavailable is wrapped by Start's error when the machine cannot run a
// daemon (no dockerd or docker binary, not root): a reason to skip, not a
// failure.
var ErrUnavailable = errors.New("dockerd unavailable")

// Daemon is one running dockerd.
type Daemon struct {
	Dir  string // holds data/, exec/, pid, sock, log
	Sock string
	root string // what Start was given: Dir's parent
	cmd  *exec.Cmd
	done chan error
}

// Start starts dockerd under dir (created if missing; Close removes it) and
// waits until it answers, trying overlay2 and then vfs as the storage driver.
func Start(dir string) (*Daemon, error) {
	for _, bin := range []string{"dockerd", "docker"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%w: %s not installed (Debian's docker.io)", ErrUnavailable, bin)
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: dockerd needs root", ErrUnavailable)
	}
	var errs []error
	for _, driver := range []string{"overlay2", "vfs"} {
		d, err := start(filepath.Join(dir, driver), driver)
		if err == nil {
			d.root = dir
			return d, nil
		}
		errs = append(errs, fmt.Errorf("storage driver %s: %w", driver, err))
	}
	return nil, errors.Join(append(errs, os.RemoveAll(dir))...)
}

func start(dir, driver string) (*Daemon, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d := &Daemon{Dir: dir, Sock: filepath.Join(dir, "sock"), done: make(chan error, 1)}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d.cmd = exec.Command("dockerd",
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"),
		"-H", "unix://"+d.Sock,
		"--iptables=false", "--ip6tables=false", "--bridge=none",
		"--storage-driver="+driver)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r := d.Docker("", "version", "--format", "{{.Server.Version}}"); r.Code == 0 {
			return d, nil
		}
		select {
		case err := <-d.done:
			d.done <- err
			tail := d.logTail()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("dockerd exited (%v): %s", err, tail)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tail := d.logTail()
			d.Close()
			return nil, fmt.Errorf("dockerd did not answer in 60 s: %s", tail)
		}
	}
}

func (d *Daemon) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Result is what one docker command printed and its exit status.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Docker runs the docker CLI against the daemon, stdin as its input.
func (d *Daemon) Docker(stdin string, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", "unix://" + d.Sock}, args...)...)
	// The API version of docker 20.10, whatever the CLI's own is.
	cmd.Env = append(os.Environ(), "DOCKER_API_VERSION=1.41", "DOCKER_CONFIG="+filepath.Join(d.Dir, "config"))
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		r.Code, r.Stderr = -1, err.Error()
	}
	return r
}

// Close stops the daemon (SIGTERM, then SIGKILL after 20 s) and removes its
// directories.
func (d *Daemon) Close() error {
	if d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.done:
			d.done <- err
		case <-time.After(20 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	}
	// The vfs/overlay2 data of a stopped daemon holds no mounts; remove it.
	syscall.Unmount(filepath.Join(d.Dir, "data", "overlay2"), syscall.MNT_DETACH)
	if d.root != "" {
		return os.RemoveAll(d.root)
	}
	return os.RemoveAll(d.Dir)
}
