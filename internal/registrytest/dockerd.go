package registrytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dockerd is a dockerd of the test's own: its own data-root, exec-root,
// pidfile and socket, no iptables and no bridge, vfs storage.
type Dockerd struct {
	Sock string
	cmd  *exec.Cmd
	log  bytes.Buffer
}

// StartDockerd starts dockerd and waits for it to answer; the test is
// skipped, with the reason, where dockerd is missing or cannot start here.
// It stops when the test ends.
func StartDockerd(t testing.TB) *Dockerd {
	t.Helper()
	d, why := TryDockerd(t)
	if d == nil {
		t.Skip(why)
	}
	return d
}

// TryDockerd is StartDockerd that says why instead of skipping, for a
// benchmark that runs its other contenders anyway.
func TryDockerd(t testing.TB) (*Dockerd, string) {
	t.Helper()
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, "dockerd (Debian's docker.io) is not installed"
	}
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, "the docker CLI (Debian's docker.io) is not installed"
	}
	if os.Geteuid() != 0 {
		return nil, "dockerd needs root"
	}
	// Short paths: the socket's must fit in sun_path.
	dir, err := os.MkdirTemp("", "registry-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Dockerd{Sock: filepath.Join(dir, "d.sock")}
	d.cmd = exec.Command(bin, "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "d.pid"), "-H", "unix://"+d.Sock, "--iptables=false", "--bridge=none",
		"--storage-driver=vfs", "--containerd-namespace", "strata-registry-test", "--containerd-plugins-namespace", "strata-registry-test-p")
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Sprintf("dockerd cannot start: %v", err)
	}
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
		// vfs layers are plain directories; the data root goes with them.
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if out, err := exec.CommandContext(ctx, "docker", "-H", "unix://"+d.Sock, "version", "-f", "{{.Server.Version}}").CombinedOutput(); err == nil {
			return d, ""
		} else if ctx.Err() != nil {
			return nil, fmt.Sprintf("dockerd did not come up: %s\n%s", out, lastLines(d.log.String(), 20))
		}
		select {
		case <-done:
			return nil, fmt.Sprintf("dockerd exited at start:\n%s", lastLines(d.log.String(), 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Docker runs the docker CLI against this dockerd.
func (d *Dockerd) Docker(t testing.TB, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("docker", append([]string{"-H", "unix://" + d.Sock}, args...)...).CombinedOutput()
	return string(out), err
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
