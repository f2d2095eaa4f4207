package fs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// A mount whose image has no SELinux labels says so (EOPNOTSUPP) for
// security.selinux, so that GNU ls -l stops asking after the first entry;
// other missing names stay ENODATA, present ones are returned, and a label
// set on the mount makes it one with labels.
func TestFS_SelinuxLabels(t *testing.T) {
	t.Run("image without labels", func(t *testing.T) {
		m := mountTraced(t, baseImage(t), mountOpts{writeback: true})
		if _, err := getxattr(m.p("etc/passwd"), selinuxXattr); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("getxattr %s of a lower file: %v, want EOPNOTSUPP", selinuxXattr, err)
		}
		if _, err := getxattr(m.p("etc/passwd"), "user.none"); !errors.Is(err, unix.ENODATA) {
			t.Errorf("getxattr user.none: %v, want ENODATA", err)
		}
		if v, err := getxattr(m.p("etc/motd"), "user.origin"); err != nil || string(v) != "layer0" {
			t.Errorf("getxattr user.origin = %q, %v; want layer0", v, err)
		}
		if n, err := unix.Lgetxattr(m.p("etc/motd"), "user.origin", make([]byte, 2)); !errors.Is(err, unix.ERANGE) {
			t.Errorf("getxattr into 2 bytes: %d, %v; want ERANGE", n, err)
		}
		before := traceOf(m, "GETXATTR:"+selinuxXattr)
		if out, err := exec.Command("ls", "-lR", m.dir).CombinedOutput(); err != nil {
			t.Fatalf("ls -lR: %v: %s", err, out)
		}
		if n := traceOf(m, "GETXATTR:"+selinuxXattr) - before; n > 2 {
			t.Errorf("GNU ls -lR sent %d GETXATTR %s, want at most 2 (EOPNOTSUPP, then no more on this device)", n, selinuxXattr)
		}

		const label = "system_u:object_r:etc_t:s0"
		if err := unix.Lsetxattr(m.p("etc/passwd"), selinuxXattr, []byte(label), 0); err != nil {
			t.Fatal(err)
		}
		if v, err := getxattr(m.p("etc/passwd"), selinuxXattr); err != nil || string(v) != label {
			t.Errorf("label set on the mount reads back %q, %v", v, err)
		}
		for _, p := range []string{"usr/share/doc/a.txt", "etc/motd"} {
			if _, err := getxattr(m.p(p), selinuxXattr); !errors.Is(err, unix.ENODATA) {
				t.Errorf("%s after a label was set: %v, want ENODATA", p, err)
			}
		}
	})
	t.Run("resumed upper with a label", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root")
		}
		img := baseImage(t)
		base := t.TempDir()
		dir, upper := filepath.Join(base, "mnt"), filepath.Join(base, "upper")
		for _, d := range []string{dir, upper} {
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		mount := func(resume bool) *Server {
			srv, err := Mount(dir, img.tree, &Options{Resume: resume, Upper: upper, Objects: img.objectPath, Logger: discardLogger(), FsName: "strata-test"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Unmount() })
			return srv
		}
		srv := mount(false)
		const label = "system_u:object_r:etc_t:s0"
		if err := unix.Lsetxattr(filepath.Join(dir, "etc/passwd"), selinuxXattr, []byte(label), 0); err != nil {
			t.Fatal(err)
		}
		if err := srv.Unmount(); err != nil {
			t.Fatal(err)
		}
		mount(true)
		// EOPNOTSUPP here would have GNU ls stop asking, and hide the label.
		if _, err := getxattr(filepath.Join(dir, "etc/motd"), selinuxXattr); !errors.Is(err, unix.ENODATA) {
			t.Errorf("unlabelled file of a resumed upper that holds a label: %v, want ENODATA", err)
		}
		if v, err := getxattr(filepath.Join(dir, "etc/passwd"), selinuxXattr); err != nil || string(v) != label {
			t.Errorf("label of the resumed upper reads %q, %v", v, err)
		}
		if names, err := listxattr(filepath.Join(dir)); err != nil || len(names) != 0 {
			t.Errorf("root's xattrs %q, %v: the mark shows", names, err)
		}
	})
	t.Run("image with labels", func(t *testing.T) {
		const label = "system_u:object_r:bin_t:s0"
		img := newTestImage(t, func(b *layerBuilder) {
			b.dir("bin", 0o755).
				file("bin/plain", 0o755, "p").
				add(&layerstore.Entry{Path: "bin/labelled", Type: layerstore.TypeReg, Mode: 0o755,
					Xattrs: map[string]string{selinuxXattr: label}})
			for _, e := range b.entries {
				if e.Path == "bin/labelled" {
					e.Digest = writeTestObject(t, b.objects, nil)
				}
			}
		})
		m := mountImage(t, img, mountOpts{readOnly: true})
		if v, err := getxattr(m.p("bin/labelled"), selinuxXattr); err != nil || string(v) != label {
			t.Errorf("label of the image reads %q, %v", v, err)
		}
		if _, err := getxattr(m.p("bin/plain"), selinuxXattr); !errors.Is(err, unix.ENODATA) {
			t.Errorf("unlabelled file of a labelled image: %v, want ENODATA", err)
		}
	})
}

// A listing the kernel reads again (its cached pages reclaimed) leaves the
// POSIX ACLs it caches for the children it knows alone: READDIRPLUS sends
// no attributes for them, so ls -l does not ask for every child's ACL
// again.
func TestFS_ReaddirplusKeepsCachedACLs(t *testing.T) {
	img := newTestImage(t, func(b *layerBuilder) {
		b.dir("d", 0o755)
		for i := range 200 {
			b.file(fmt.Sprintf("d/f%03d", i), 0o644, "x")
		}
	})
	m := mountTraced(t, img, mountOpts{writeback: true})
	ls := func() {
		t.Helper()
		if out, err := exec.Command("ls", "-l", m.p("d")).CombinedOutput(); err != nil {
			t.Fatalf("ls -l: %v: %s", err, out)
		}
	}
	ls()
	ls()
	acl := "GETXATTR:system.posix_acl_access"
	before, rdplus := traceOf(m, acl), traceOf(m, "READDIRPLUS")
	// Drop the page cache (the listing's cached pages), not dentries
	// or inodes.
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0); err != nil {
		t.Skipf("cannot drop the page cache: %v", err)
	}
	ls()
	if traceOf(m, "READDIRPLUS") == rdplus {
		t.Fatal("the listing was not read again after the page cache was dropped")
	}
	if n := traceOf(m, acl) - before; n > 2 {
		t.Errorf("%d GETXATTR %s after the listing was read again, want at most 2 (the directory's own): the children's cached ACLs were forgotten", n, "system.posix_acl_access")
	}
}
