package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/bench"
	"github.com/strata-dev/strata/internal/storetest"
)

// strata bench --mounts brings N read-write mounts of one image up with
// strata mount -d (served by strata-mount, installed beside strata as go
// install puts it) and beside them N fuse-overlayfs mounts, checks each
// keeps its writes to itself, measures, and takes them all down.
func TestBench_Mounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
		t.Skip("fuse-overlayfs is not installed")
	}
	strata, lean := installWithServer(t)
	dir, out := t.TempDir(), t.TempDir()
	c := exec.Command(strata, "--root", filepath.Join(t.TempDir(), "unused"), "bench", "--mounts", "3", "--mounts-image", filepath.Join(fixtureDir(t), "oci"), "--dir", dir, "--out", out)
	c.Env = append(os.Environ(), cliEnv+"=1")
	var errb strings.Builder
	c.Stderr = &errb
	b, err := c.Output()
	stdout := string(b)
	if err != nil {
		t.Fatalf("strata bench --mounts: %v\n%s\n%s", err, stdout, errb.String())
	}
	t.Log(stdout)
	b, err = os.ReadFile(filepath.Join(out, "mounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rp bench.MountsReport
	if err := json.Unmarshal(b, &rp); err != nil {
		t.Fatal(err)
	}
	if len(rp.Rows) != 2 || rp.Entries == 0 {
		t.Fatalf("report: %+v", rp)
	}
	for _, r := range rp.Rows {
		if r.Err != "" || r.Mounts != 3 || r.Anon <= 0 || r.AnonIdle <= 0 || r.PSS <= 0 || r.Up <= 0 {
			t.Errorf("row %+v", r)
		}
		if r.Contender == bench.Strata && (len(r.Servers) != 1 || r.Servers[0] != lean) {
			t.Errorf("strata's mounts are served by %q, want %s", r.Servers, lean)
		}
	}
	if !strings.Contains(stdout, "fuse-overlayfs") {
		t.Errorf("table without fuse-overlayfs:\n%s", stdout)
	}
	storetest.CheckRoot(t, filepath.Join(dir, "mounts", "store"))
}
