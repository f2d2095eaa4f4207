package container

import (
	"archive/tar"
	"bytes"
	"errors"
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
