package container

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Extracted onto the host (HostSafe), an archive's user.* attributes stay
// and every security.* and trusted.* one is dropped: not only file
// capabilities but any label a host's LSM may act on. Without HostSafe
// (into a container, or cp -a) all of them are set.
func TestExtract_HostSafeXattrs(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("needs root: security.* and trusted.* attributes")
	}
	// cap_net_raw+ep, as setcap writes it (VFS_CAP_REVISION_2).
	capNetRaw := string([]byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	xattrs := map[string]string{
		"user.color":           "blue",
		"security.capability":  capNetRaw,
		"security.SMACK64EXEC": "host-admin",
		"trusted.mark":         "t",
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	pax := map[string]string{}
	for k, v := range xattrs {
		pax[paxXattr+k] = v
	}
	if err := tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2, PAXRecords: pax, Format: tar.FormatPAX}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("f\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, hostSafe := range []bool{true, false} {
		dir := t.TempDir()
		tree, err := OpenTree(dir)
		if err != nil {
			t.Fatal(err)
		}
		var skipped []string
		err = tree.Extract("/", bytes.NewReader(b.Bytes()), ExtractOptions{NoChown: true, HostSafe: hostSafe,
			Skipped: func(name, what string) { skipped = append(skipped, name+": "+what) }})
		tree.Close()
		if err != nil {
			t.Fatalf("HostSafe %v: %v", hostSafe, err)
		}
		f := filepath.Join(dir, "f")
		for name, want := range xattrs {
			buf := make([]byte, 64)
			n, err := unix.Getxattr(f, name, buf)
			switch {
			case hostSafe && name != "user.color":
				if !errors.Is(err, unix.ENODATA) {
					t.Errorf("HostSafe: %s = %q (%v), want it dropped", name, buf[:max(n, 0)], err)
				}
			case err != nil && slices.ContainsFunc(skipped, func(s string) bool { return strings.Contains(s, name) }):
				// Reported, as a destination that refuses it must be
				// (an LSM that owns the name may).
				t.Logf("HostSafe %v: %s refused here: %v", hostSafe, name, skipped)
			case err != nil || string(buf[:n]) != want:
				t.Errorf("HostSafe %v: %s = %q (%v), want %q", hostSafe, name, buf[:max(n, 0)], err, want)
			}
		}
	}
}

// A volume's fill keeps a symlink's own extended attributes, as cp -a
// does: trusted.* set on a link in the image is on the link in the volume
// (and the link's target is not given them).
func TestCopyImageContent_SymlinkXattrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: trusted.* attributes")
	}
	rootfs, vol := t.TempDir(), t.TempDir()
	src := filepath.Join(rootfs, "vol")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "target"), []byte("t"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(src, "link")
	if err := os.Symlink("target", link); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(link, "trusted.fill", []byte("on the link"), 0); err != nil {
		t.Skipf("no trusted.* on a symlink here: %v", err)
	}
	if err := copyImageContent(rootfs, "/vol", vol); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(vol, "link"), "trusted.fill", buf)
	if err != nil || string(buf[:n]) != "on the link" {
		t.Errorf("the link's trusted.fill in the volume: %q %v, want %q", buf[:max(n, 0)], err, "on the link")
	}
	if got, err := os.Readlink(filepath.Join(vol, "link")); err != nil || got != "target" {
		t.Errorf("the link in the volume: %q %v", got, err)
	}
	if _, err := unix.Getxattr(filepath.Join(vol, "target"), "trusted.fill", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("the link's target has its attribute: %v", err)
	}
}
