package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
)

// TestMount_SetuidAndDevicesStayInTheImage imports an image holding a
// setuid-root copy of id(1) and a 0666 device node, mounts it with every
// combination of --suid and --dev, and runs id and opens the device as the
// unprivileged user nobody: only the flags that say so may let the image's
// bits reach the host.
func TestMount_SetuidAndDevicesStayInTheImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, device nodes, switching to nobody")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to run as nobody: %v", err)
	}
	idBin, err := os.ReadFile("/usr/bin/id")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/id", Typeflag: tar.TypeReg, Mode: 0o4755, Size: int64(len(idBin))},
		{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "dev/hostnull", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(idBin)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(t.TempDir(), "suid.tar")
	if err := os.WriteFile(tarball, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	root := storetest.Root(t)
	mustRun(t, root, "import", "-q", tarball, "suid:latest")

	asNobody := func(args ...string) (string, error) {
		c := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)...)
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, tc := range []struct {
		flags     []string
		suid, dev bool
	}{
		{nil, false, false},
		{[]string{"--suid"}, true, false},
		{[]string{"--dev"}, false, true},
		{[]string{"--suid", "--dev"}, true, true},
	} {
		t.Run(fmt.Sprintf("flags=%s", strings.Join(tc.flags, ",")), func(t *testing.T) {
			dir, done := startMountImage(t, root, "suid", tc.flags...)
			// nobody must reach the mountpoint: open up the test's temp root.
			if err := os.Chmod(filepath.Dir(filepath.Dir(dir)), 0o755); err != nil {
				t.Fatal(err)
			}
			euid, err := asNobody(filepath.Join(dir, "bin/id"), "-u")
			if err != nil {
				t.Fatalf("id as nobody: %v: %s", err, euid)
			}
			want := "65534"
			if tc.suid {
				want = "0"
			}
			if euid != want {
				t.Errorf("euid of the image's setuid-root id run by nobody = %s, want %s", euid, want)
			}
			out, err := asNobody("/bin/sh", "-c", ": > "+filepath.Join(dir, "dev/hostnull"))
			if tc.dev && err != nil {
				t.Errorf("nobody opening the image's 0666 device with --dev: %v: %s", err, out)
			}
			if !tc.dev && (err == nil || !strings.Contains(out, "Permission denied")) {
				t.Errorf("nobody opening the image's 0666 device on a nodev mount: err %v, output %q; want permission denied", err, out)
			}
			if r := runStrata(t, root, "", "umount", dir); r.err != nil {
				t.Fatalf("umount: %v\n%s", r.err, r.stderr)
			}
			if r := <-done; r.err != nil {
				t.Errorf("mount: %v\n%s", r.err, r.stderr)
			}
		})
	}
}
