package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// serveEnv makes the test binary a strata server (Serve) instead of running
// tests, so that the harness can start the strata contender without the CLI.
const serveEnv = "STRATA_BENCH_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		os.Exit(serveMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func serveMain(args []string) int {
	var o ServeOptions
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.StringVar(&o.Store, "store", "", "")
	fl.StringVar(&o.Image, "image", "", "")
	fl.StringVar(&o.Dir, "dir", "", "")
	fl.BoolVar(&o.ReadOnly, "read-only", false, "")
	fl.BoolVar(&o.Trace, "trace", false, "")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	o.In, o.Out = os.Stdin, os.Stdout
	if err := Serve(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

// tinySpec is a dataset that a test generates in a second or two.
func tinySpec() Spec {
	return Spec{Seed: 7, Files: 300, Dirs: 12, Layers: 3, BigSize: 4 << 20, Depths: []int{1, 3}, WriteFiles: 40, DiskImages: 2, AppFiles: 30}
}

// tinyReal is a real dataset made of small trees every machine that runs
// the tests has: parts of the Go tree.
func tinyReal() RealSpec {
	root := runtime.GOROOT()
	return RealSpec{Base: []string{filepath.Join(root, "src", "io")}, Apps: []string{filepath.Join(root, "src", "bufio")}, BigSize: 4 << 20}
}

// testLog collects the harness's progress lines and can call a hook on each.
type testLog struct {
	t    *testing.T
	mu   sync.Mutex
	hook func(line string)
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := strings.TrimRight(string(p), "\n")
	l.t.Log(line)
	if l.hook != nil {
		l.hook(line)
	}
	return len(p), nil
}

// testContenders is native and kernel overlayfs, and strata served by this
// test binary when the machine allows FUSE mounts.
func testContenders(t *testing.T) ([]string, []string) {
	cs := []string{Native, Overlayfs}
	var self []string
	if os.Geteuid() == 0 {
		if _, err := os.Stat("/dev/fuse"); err == nil {
			cs = append(cs, Strata)
			t.Setenv(serveEnv, "1") // inherited by the server child only matters there
			self = []string{os.Args[0]}
		}
	}
	return cs, self
}

func TestRun_Quick(t *testing.T) {
	dir := t.TempDir()
	cs, self := testContenders(t)
	t.Setenv("STRATA_DEBIAN", "") // the apt-get row has a test of its own
	rp, err := Run(context.Background(), Config{Dir: dir, Spec: tinySpec(), Real: tinyReal(), Reps: 2, RandOps: 256, Contenders: cs, Self: self, Trace: true, Log: &testLog{t: t}})
	if err != nil {
		t.Fatal(err)
	}
	checkNoMounts(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "run")); !os.IsNotExist(err) {
		t.Errorf("the run directory is still there: %v", err)
	}
	rows := map[string]bool{}
	for _, r := range rp.Results {
		rows[r.Key()] = true
		switch {
		case r.Contender == Overlayfs && (r.Err != "" || r.Skip != ""):
			// Kernel overlayfs may be missing here (not root, a kernel
			// without it, a file system it cannot use as upper).
			t.Logf("overlayfs %s: not measured: %s%s", r.Key(), r.Skip, r.Err)
		case r.Err != "":
			t.Errorf("%s %s failed: %s", r.Key(), r.Contender, r.Err)
		case r.Skip != "":
			t.Logf("%s %s skipped: %s", r.Key(), r.Contender, r.Skip)
		case r.Stats == nil || r.Stats.N != len(r.Samples):
			t.Errorf("%s %s: stats %+v for %d samples", r.Key(), r.Contender, r.Stats, len(r.Samples))
		case r.Unit == UnitSeconds && r.Stats.N != 2:
			t.Errorf("%s %s: %d samples, want 2", r.Key(), r.Contender, r.Stats.N)
		}
	}
	for _, w := range []string{"stat-walk/warm", "ls-lR/warm", "read-small/warm", "seq-read/warm", "rand-read/warm", "append/1 byte",
		"chmod/0600", "write-small/create", "depth/walk layers=3", "import/3 layers", "disk/2 images",
		"find/warm", "gnu-ls-lR/warm", "tar/warm", "dd/bs=4k", "create-1k/1 KiB", "read-back/warm"} {
		if !rows[w] {
			t.Errorf("no row %s", w)
		}
	}
	if r := rp.find(WApt+"/"+strings.Join(aptPackages, " "), Native); r == nil || !strings.Contains(r.Skip, "STRATA_DEBIAN") {
		t.Errorf("apt-get row without a Debian image: %+v, want skipped naming STRATA_DEBIAN", r)
	}
	if r := rp.find("stat-walk/warm", Native); r == nil || r.VsNative == nil || *r.VsNative != 1 {
		t.Errorf("native's ratio to itself: %+v", r)
	}
	if len(rp.Goals) == 0 {
		t.Error("no goals")
	}
	if rp.Meta.LoadMax <= 0 || len(rp.Meta.LoadSeries) == 0 {
		t.Errorf("no load sampled: max %v, %d samples", rp.Meta.LoadMax, len(rp.Meta.LoadSeries))
	}
	if r := rp.find("find/warm", Strata); r != nil && r.Stats != nil {
		if r.Trace["LOOKUP"]+r.Trace["READDIRPLUS"]+r.Trace["READDIR"]+r.Trace["GETATTR"] == 0 {
			t.Errorf("strata find/warm trace %v: no requests counted", r.Trace)
		}
		if r.Trace["OPENDIR"] != 0 || r.Trace["RELEASEDIR"] != 0 {
			t.Errorf("strata find/warm trace %v: OPENDIR or RELEASEDIR sent", r.Trace)
		}
		for op, n := range r.Trace {
			if !strings.HasPrefix(op, "GETXATTR:") && n > 0 && r.TraceTime[op] <= 0 {
				t.Errorf("strata find/warm trace: %v %s, and no server time on them (%v)", n, op, r.TraceTime)
			}
		}
	}
	// A fresh mount per run is a new server: its trace is the one counted.
	if r := rp.find("chmod/0600", Strata); r != nil && r.Stats != nil && (r.Trace["SETATTR"] == 0 || r.TraceTime["SETATTR"] <= 0) {
		t.Errorf("strata chmod/0600 trace %v %v: no SETATTR and its time (a fresh mount's server not asked?)", r.Trace, r.TraceTime)
	}
	// A second run reuses the dataset.
	var reused bool
	log := &testLog{t: t, hook: func(l string) { reused = reused || strings.Contains(l, "dataset: reusing") }}
	if _, err := Run(context.Background(), Config{Dir: dir, Spec: tinySpec(), Real: tinyReal(), Reps: 1, Only: []string{WStatWalk}, Contenders: []string{Native}, Log: log}); err != nil {
		t.Fatal(err)
	}
	if !reused {
		t.Error("the second run generated the dataset again")
	}
}

// TestRun_Apt runs the apt-get row on native and strata: apt-get install
// from the repository the harness builds (with this machine's apt, from its
// package mirror) in a chroot of the Debian fixture.
func TestRun_Apt(t *testing.T) {
	if os.Getenv("STRATA_DEBIAN") == "" {
		t.Skip("STRATA_DEBIAN is not set (internal/fixtures' Debian image)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot)")
	}
	dir := t.TempDir()
	cs, self := testContenders(t)
	cs = slices.DeleteFunc(cs, func(c string) bool { return c == Overlayfs })
	rp, err := Run(context.Background(), Config{Dir: dir, Spec: tinySpec(), Real: tinyReal(), Reps: 1, Only: []string{WApt},
		Contenders: cs, Self: self, Log: &testLog{t: t}})
	if err != nil {
		t.Fatal(err)
	}
	checkNoMounts(t, dir)
	key := WApt + "/" + strings.Join(aptPackages, " ")
	for _, c := range cs {
		r := rp.find(key, c)
		switch {
		case r == nil:
			t.Errorf("no %s cell of %s", c, key)
		case r.Skip != "" && strings.Contains(r.Skip, "download"):
			t.Skipf("no package mirror: %s", r.Skip)
		case r.Err != "" || r.Skip != "" || r.Stats == nil:
			t.Errorf("%s %s: not measured: %s%s", key, c, r.Err, r.Skip)
		}
	}
}

// TestRun_Cancel cancels a run in the middle of a workload and checks that
// it returns the cancellation and leaves no mount behind.
func TestRun_Cancel(t *testing.T) {
	dir := t.TempDir()
	cs, self := testContenders(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &testLog{t: t, hook: func(l string) {
		if strings.Contains(l, WReadSmall+"/warm") {
			cancel()
		}
	}}
	_, err := Run(ctx, Config{Dir: dir, Spec: tinySpec(), Real: tinyReal(), Reps: 2, Contenders: cs, Self: self, Log: log})
	if err == nil || ctx.Err() == nil {
		t.Fatalf("Run returned %v after cancel", err)
	}
	checkNoMounts(t, dir)
}

func TestRun_BadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Dir: t.TempDir(), Only: []string{"nope"}},
		{Dir: t.TempDir(), Contenders: []string{"zfs"}},
		{Dir: t.TempDir(), Spec: tinySpec(), Dataset: "debian-ish"},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) did not fail", cfg)
		}
	}
}

func checkNoMounts(t *testing.T, dir string) {
	t.Helper()
	left, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range left {
		t.Errorf("left mounted: %s", m)
		unmountDir(m)
	}
}
