package container

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/runctest"
)

// demoConfig is the fixture image's config (internal/fixtures/make-fixtures.sh).
var demoConfig = ocispec.ImageConfig{
	User:       "root",
	Env:        []string{"PATH=/bin:/usr/bin:/sbin", "APP=demo"},
	Entrypoint: []string{"/bin/sh"},
	Cmd:        []string{"-c", "echo hello from demo"},
	WorkingDir: "/app",
}

// testRootfs is a plain copy of the fixture image's root file system.
func testRootfs(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runc, namespaces")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("runc is needed (.ci/run installs it): %v", err)
	}
	dst := filepath.Join(t.TempDir(), "rootfs")
	src := filepath.Join(fixtures.Dir(t), "rootfs")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	return dst
}

// run runs the fixture image's config with o on rootfs under runc and
// returns its output and exit status.
func run(t *testing.T, rootfs string, cfg ocispec.ImageConfig, o Options) (string, int, error) {
	t.Helper()
	return runCtx(context.Background(), t, rootfs, cfg, o)
}

func runCtx(ctx context.Context, t *testing.T, rootfs string, cfg ocispec.ImageConfig, o Options) (string, int, error) {
	t.Helper()
	id := "strata-test-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	bundle := filepath.Join(t.TempDir(), "bundle")
	spec, err := Spec(id, rootfs, filepath.Join(bundle, "etc"), cfg, o)
	if err != nil {
		return "", 0, err
	}
	if err := WriteBundle(bundle, spec); err != nil {
		t.Fatal(err)
	}
	rt := &Runtime{Root: runctest.Root(t)}
	var out bytes.Buffer
	code, err := rt.Run(ctx, id, bundle, Stdio{Stdout: &out, Stderr: &out}, nil)
	return out.String(), code, err
}

func TestRun_ImageConfigAndOverrides(t *testing.T) {
	rootfs := testRootfs(t)
	for _, tc := range []struct {
		name string
		o    Options
		out  string
		code int
	}{
		{"image as configured", Options{}, "hello from demo\n", 0},
		{"cmd, env, hostname, exit status", Options{
			Cmd:      []string{"-c", `id -u; pwd; echo "$APP $NEW $HOSTNAME $FROMHOST"; cat /etc/hostname; exit 3`},
			Env:      []string{"APP=override", "NEW=1", "FROMHOST", "ABSENT"},
			HostEnv:  func(k string) (string, bool) { return "host-" + k, k == "FROMHOST" },
			Hostname: "box",
		}, "0\n/app\noverride 1 box host-FROMHOST\nbox\n", 3},
		{"user by name from the image's passwd", Options{User: "user", Cmd: []string{"-c", "id; echo $HOME"}},
			"uid=1000(user) gid=1000(user) groups=1000(user)\n/home/user\n", 0},
		{"uid:gid", Options{User: "2000:3000", Cmd: []string{"-c", "id"}}, "uid=2000(app) gid=3000 groups=3000\n", 0},
		{"etc files as docker writes them", Options{Cmd: []string{"-c", "cat /etc/hosts"}},
			"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n", 0},
		{"missing working directory is made", Options{WorkingDir: "/new/dir", Cmd: []string{"-c", "pwd; stat -c %u:%a /new/dir"}},
			"/new/dir\n0:755\n", 0},
		{"entrypoint replaced, image cmd dropped", Options{Entrypoint: []string{"/bin/echo"}}, "\n", 0},
		{"entrypoint replaced with cmd", Options{Entrypoint: []string{"/bin/echo"}, Cmd: []string{"a", "b"}}, "a b\n", 0},
		{"no network but loopback", Options{Cmd: []string{"-c", "ls /sys/class/net"}}, "lo\n", 0},
		{"status of a child killed by a signal", Options{Cmd: []string{"-c", `sh -c 'kill -9 $$'; exit $?`}}, "Killed\n", 137},
		{"init as PID 1, the command its child", Options{Init: true, Cmd: []string{"-c", "cat /proc/1/comm; [ $$ -ne 1 ] && echo child"}}, "docker-init\nchild\n", 0},
		{"read-only root", Options{ReadOnly: true, Cmd: []string{"-c", "touch /x 2>/dev/null || echo refused"}}, "refused\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code, err := run(t, rootfs, demoConfig, tc.o)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			if out != tc.out || code != tc.code {
				t.Errorf("got %q, exit %d; want %q, exit %d", out, code, tc.out, tc.code)
			}
		})
	}
}

// TestRun_Cancel: cancelling the run kills the container (SIGKILL from
// outside reaches even PID 1), and the status says so.
func TestRun_Cancel(t *testing.T) {
	rootfs := testRootfs(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fifo := filepath.Join(rootfs, "started")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		// The container opens the fifo once it runs: then cancel.
		f, err := os.Open(fifo)
		if err == nil {
			f.Close()
		}
		cancel()
	}()
	out, code, err := runCtx(ctx, t, rootfs, demoConfig, Options{Cmd: []string{"-c", "echo > /started; sleep 600"}})
	if err != nil || code != 137 {
		t.Errorf("cancelled run: exit %d, %v, want 137\n%s", code, err, out)
	}
}

func TestRun_CannotStart(t *testing.T) {
	rootfs := testRootfs(t)
	for _, tc := range []struct {
		name string
		o    Options
		code int
	}{
		{"command not found", Options{Entrypoint: []string{}, Cmd: []string{"nosuch"}}, ExitNotFound},
		{"path not found", Options{Entrypoint: []string{}, Cmd: []string{"/no/such"}}, ExitNotFound},
		{"not executable", Options{Entrypoint: []string{}, Cmd: []string{"/etc/motd"}}, ExitCannotInvoke},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code, err := run(t, rootfs, demoConfig, tc.o)
			var se *StartError
			if !errors.As(err, &se) || code != tc.code || se.Code != tc.code {
				t.Errorf("exit %d, err %v; want a StartError with %d\n%s", code, err, tc.code, out)
			}
		})
	}
}

func TestSpec_BadInput(t *testing.T) {
	rootfs := testRootfs(t)
	etc := filepath.Join(t.TempDir(), "etc")
	if _, err := Spec("x", rootfs, etc, ocispec.ImageConfig{}, Options{}); !errors.Is(err, ErrNoCommand) {
		t.Errorf("no command: %v, want ErrNoCommand", err)
	}
	if _, err := Spec("x", rootfs, etc, demoConfig, Options{User: "nosuchuser"}); err == nil || !strings.Contains(err.Error(), "unable to find user nosuchuser") {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := Spec("x", rootfs, etc, demoConfig, Options{WorkingDir: "rel"}); err == nil {
		t.Error("relative working directory accepted")
	}
	if _, err := Spec("x", rootfs, etc, demoConfig, Options{Network: "bridge"}); err == nil {
		t.Error("unknown network accepted")
	}
	if _, err := Spec("x", rootfs, etc, demoConfig, Options{Env: []string{"=x"}}); err == nil {
		t.Error("env without a name accepted")
	}
}

// TestSpec_StaysInsideTheRoot: an image whose /etc/passwd is a symlink out of
// the root, or whose working directory's parent is, resolves inside it.
func TestSpec_StaysInsideTheRoot(t *testing.T) {
	rootfs := testRootfs(t)
	// A passwd on the host that knows "hostonly"; the image's does not.
	host := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(host, []byte("hostonly:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(rootfs, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../.."+host, filepath.Join(rootfs, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(t.TempDir(), "etc")
	if _, err := Spec("x", rootfs, etc, demoConfig, Options{User: "hostonly"}); err == nil {
		t.Error("user resolved through a symlink to a passwd file on the host")
	}
	// A working directory under a symlink to a host directory is never made
	// there: the link resolves inside the root, where its target is missing.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(rootfs, "escape")); err != nil {
		t.Fatal(err)
	}
	_, err := Spec("x", rootfs, etc, demoConfig, Options{User: "0", WorkingDir: "/escape/made"})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("working directory under a dangling (inside the root) symlink: %v, want not-exist", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "made")); err == nil {
		t.Error("working directory made outside the root")
	}
	// Inside the root, the same link target exists: the directory is made there.
	if err := os.MkdirAll(filepath.Join(rootfs, outside), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Spec("x", rootfs, etc, demoConfig, Options{User: "0", WorkingDir: "/escape/made"}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(rootfs, outside, "made")); err != nil || !st.IsDir() {
		t.Errorf("working directory not made inside the root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "made")); err == nil {
		t.Error("working directory made outside the root")
	}
}
