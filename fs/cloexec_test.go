package fs

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A mount's /dev/fuse descriptor is not inherited by the programs the
// server's process starts (runc for a container's root): one that held it
// would keep the connection alive after the server was killed, and a
// caller whose request the server had read would hang in D state for good.
func TestFS_FUSEDescriptorNotInherited(t *testing.T) {
	for _, o := range []mountOpts{{}, {readOnly: true}} {
		m := mountImage(t, baseImage(t), o)
		if _, err := os.Stat(m.p("etc/passwd")); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ls", "-l", "/proc/self/fd").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if strings.Contains(string(out), "/dev/fuse") {
			t.Errorf("read-only %v: a child of the server holds /dev/fuse:\n%s", o.readOnly, out)
		}
	}
}
