package fs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// asUser2000 is the prefix of a command run as uid 2000 with no
// capabilities.
var asUser2000 = []string{"setpriv", "--reuid=2000", "--regid=2000", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}

// shAs2000 runs script under sh as uid 2000 with args ($1...) and returns
// its output, trimmed (an error message, or "").
func shAs2000(t *testing.T, script string, args ...string) string {
	t.Helper()
	argv := append(append(append([]string{}, asUser2000...), "sh", "-c", script, "sh"), args...)
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

// TestFS_PrivUserNS: a user with every capability in a user namespace of
// its own (unshare -r) has none over the mount's files, and a user counts
// as a writer only for a descriptor it holds, as on the local file system
// (a plain directory in a temporary dir, the reference), in every mode:
// its write to a root-owned setuid file clears the bits, through a handle
// opened before the chmod too; its chown -1 -1 of a root-owned setuid file
// (lower or upper, held open for writing by root) fails with EPERM, keeps
// the bits and copies nothing up; root's chown -1 -1 of a setuid file
// clears them.
func TestFS_PrivUserNS(t *testing.T) {
	if out, err := exec.Command(asUser2000[0], append(asUser2000[1:], "unshare", "-r", "true")...).CombinedOutput(); err != nil {
		t.Skipf("no user namespaces for an unprivileged user here: %v %s", err, out)
	}
	img := newTestImage(t, func(b *layerBuilder) {
		b.dir("bin", 0o755).dir("tmp", 0o1777).file("bin/rootsuid", 0o4755, "#!/bin/sh\n")
	})
	for _, o := range []mountOpts{{}, {writeback: true}, {passthrough: true}} {
		t.Run(fmt.Sprintf("writeback=%v,passthrough=%v", o.writeback, o.passthrough), func(t *testing.T) {
			m := mountTraced(t, img, o)
			ref := localRef(t)
			mk := func(p string, mode os.FileMode) {
				t.Helper()
				if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, mode); err != nil {
					t.Fatal(err)
				}
			}
			mk(filepath.Join(ref, "bin/rootsuid"), 0o755|os.ModeSetuid)
			// both runs fn on the reference's path and the mount's, and
			// wants the same output and mode.
			both := func(what, rel string, fn func(p string) string) {
				t.Helper()
				refOut := fn(filepath.Join(ref, rel))
				want := mustLstat(t, filepath.Join(ref, rel)).Mode
				got := fn(m.p(rel))
				if got != refOut {
					t.Errorf("%s: %q, on the local file system %q", what, got, refOut)
				}
				if st := mustLstat(t, m.p(rel)); st.Mode != want {
					t.Errorf("%s: mode %o, on the local file system %o", what, st.Mode&0o7777, want&0o7777)
				}
			}

			// Its write to a setuid file anyone may write.
			both("uid 2000's write in its own user namespace", "tmp/f", func(p string) string {
				mk(p, 0o777|os.ModeSetuid)
				waitNoOpens(t, m, "tmp/f")
				return shAs2000(t, `unshare -r python3 -c 'import os, sys; os.pwrite(os.open(sys.argv[1], os.O_RDWR), b"#", 0)' "$1"`, p)
			})

			// Its write through a handle opened before root's chmod.
			both("uid 2000's write in its own user namespace through a handle opened before the chmod", "tmp/g", func(p string) string {
				mk(p, 0o666)
				waitNoOpens(t, m, "tmp/g")
				cmd, stdin := startWriter(t, p, `unshare -r sh -c 'printf evil >&3'`)
				if err := os.Chmod(p, 0o755|os.ModeSetuid); err != nil {
					t.Fatal(err)
				}
				io.WriteString(stdin, "go\n")
				stdin.Close()
				if err := cmd.Wait(); err != nil {
					t.Fatalf("writer: %v", err)
				}
				if got := mustRead(t, p); !strings.HasPrefix(got, "evil") {
					t.Fatalf("%s: %q, the write did not land", p, got)
				}
				return ""
			})

			// Its chown -1 -1 of a lower root-owned setuid file.
			both("uid 2000's chown -1 -1 in its own user namespace", "bin/rootsuid", func(p string) string {
				return shAs2000(t, `unshare -r perl -e 'chown(-1, -1, $ARGV[0]) or print "$!\n"' "$1"`, p)
			})
			if _, err := lstat(filepath.Join(m.upper, "bin/rootsuid")); err == nil {
				t.Errorf("bin/rootsuid: uid 2000's chown -1 -1 in its own user namespace copied it up")
			}

			// Its chown -1 -1 of a root-owned setuid file root holds open
			// for writing.
			both("uid 2000's chown -1 -1 of a file root holds open for writing", "tmp/held", func(p string) string {
				mk(p, 0o755|os.ModeSetuid)
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				return shAs2000(t, `perl -e 'chown(-1, -1, $ARGV[0]) or print "$!\n"' "$1"`, p)
			})

			// Root's chown -1 -1 of a setuid file.
			both("root's chown -1 -1", "tmp/rootchown", func(p string) string {
				mk(p, 0o755|os.ModeSetuid)
				if err := os.Chown(p, -1, -1); err != nil {
					return err.Error()
				}
				return ""
			})
		})
	}
}

// localRef makes the local file system's twin of the test images' bin/ and
// tmp/ (mode 1777) under a t.TempDir(), with every directory up to it
// reachable by uid 2000, and returns it: what a mount is compared with.
func localRef(t *testing.T) string {
	t.Helper()
	ref := t.TempDir()
	for _, d := range []string{filepath.Dir(ref), ref, filepath.Join(ref, "bin"), filepath.Join(ref, "tmp")} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(ref, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	return ref
}

// startWriter starts uid 2000 (asUser2000) opening p for reading and
// writing as fd 3; once it has, it runs script after a line on its stdin.
// It returns when the file is open; the process is killed and reaped when
// the test ends.
func startWriter(t *testing.T, p, script string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	argv := append(append([]string{}, asUser2000...), "sh", "-c", `exec 3<>"$1"; echo ready; read x; `+script, "sh", p)
	cmd := exec.Command(argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("writer: %q %v", line, err)
	}
	return cmd, stdin
}
