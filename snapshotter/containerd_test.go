package snapshotter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
	"github.com/strata-dev/strata/snapshotter"
)

// serveEnv makes the test binary a snapshotter server ("ROOT\nSOCKET")
// instead of running tests: the fault tests kill it.
const serveEnv = "STRATA_SNAPSHOTTER_TEST_SERVE"

func TestMain(m *testing.M) {
	if v := os.Getenv(serveEnv); v != "" {
		os.Exit(serveMain(strings.Split(v, "\n")))
	}
	os.Exit(m.Run())
}

func serveMain(args []string) int {
	ctx, stop := signalContext()
	defer stop()
	// A CPU profile of the server, for the benchmark's readings.
	if p := os.Getenv("STRATA_SNAPSHOTTER_TEST_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	st, err := layerstore.Open(args[0], nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sn, err := snapshotter.Open(ctx, st, snapshotter.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := snapshotter.Listen(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := snapshotter.Serve(ctx, sn, l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// env is a snapshotter process and a containerd that uses it, each with
// its own directories and sockets under one temporary directory.
type env struct {
	t        testing.TB
	dir      string
	store    string // strata store root
	sock     string // snapshotter socket
	ctdSock  string
	ns       string // containerd namespace: runc's state is per namespace, shared by every containerd
	snap     *exec.Cmd
	snapDone chan error
}

// needContainerd skips t where containerd, ctr, runc or FUSE are missing.
func needContainerd(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containerd, runc and FUSE mounts")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	for _, b := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("no %s (Debian: apt-get install containerd runc)", b)
		}
	}
}

// newEnv starts a snapshotter and containerd; cleanup kills what runs in
// containerd, stops both, and detaches every mount left under the
// directory, whatever the test did.
func newEnv(t testing.TB) *env {
	t.Helper()
	needContainerd(t)
	// Short: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "strata-snap-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, ns: filepath.Base(dir), store: filepath.Join(dir, "store"), sock: filepath.Join(dir, "s.sock"), ctdSock: filepath.Join(dir, "c.sock")}
	t.Cleanup(func() {
		e.stopContainerd()
		if e.snap != nil && e.snap.Process != nil {
			_ = e.snap.Process.Signal(syscall.SIGTERM)
			<-e.snapDone
		}
		detachUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[proxy_plugins.strata]
  type = "snapshot"
  address = %[5]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), e.ctdSock, e.ctdSock+".ttrpc", e.sock)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.startSnapshotter()
	e.startContainerd()
	return e
}

// startSnapshotter runs the test binary as the snapshotter server and waits
// for its socket to answer.
func (e *env) startSnapshotter() {
	t := e.t
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(e.dir, "snapshotter.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), serveEnv+"="+e.store+"\n"+e.sock)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.snap, e.snapDone = cmd, make(chan error, 1)
	go func() { e.snapDone <- cmd.Wait() }()
	// Ready when it answers: a killed server leaves its socket behind.
	c := e.client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.Usage(context.Background(), &snapshotsapi.UsageRequest{Key: "none"})
		if status.Code(err) == codes.NotFound {
			return
		}
		select {
		case err := <-e.snapDone:
			log, _ := os.ReadFile(filepath.Join(e.dir, "snapshotter.log"))
			t.Fatalf("snapshotter exited: %v\n%s", err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshotter not ready in 30 s: usage of a missing snapshot: %v", err)
		}
	}
}

func (e *env) waitSocket(p string, done <-chan error) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(p); err == nil {
			return
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(filepath.Join(e.dir, "snapshotter.log"))
			e.t.Fatalf("server exited before %s appeared: %v\n%s", p, err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s did not appear in 30 s", p)
		}
	}
}

func (e *env) startContainerd() {
	t := e.t
	t.Helper()
	logf, err := os.Create(filepath.Join(e.dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("containerd", "--config", filepath.Join(e.dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		e.killShims()
	})
	e.waitSocket(e.ctdSock, done)
	e.ctr("version")
}

// killShims kills the shims this test's containerd started that are
// still there (a task the test failed in the middle of can keep its shim
// after containerd is gone): they name its socket, a path of this test's.
func (e *env) killShims() {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !bytes.Contains(b, []byte("\x00"+e.ctdSock+"\x00")) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// stopContainerd kills and deletes every task and container, so no shim
// outlives the test.
func (e *env) stopContainerd() {
	out, err := e.ctrErr("tasks", "ls", "-q")
	if err != nil {
		return
	}
	for _, id := range strings.Fields(out) {
		_, _ = e.ctrErr("tasks", "kill", "-s", "KILL", id)
		_, _ = e.ctrErr("tasks", "delete", "-f", id)
	}
	out, _ = e.ctrErr("containers", "ls", "-q")
	for _, id := range strings.Fields(out) {
		_, _ = e.ctrErr("containers", "rm", id)
	}
}

func (e *env) ctrErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"-a", e.ctdSock, "-n", e.ns}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out.String(), nil
}

func (e *env) ctr(args ...string) string {
	e.t.Helper()
	out, err := e.ctrErr(args...)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(e.dir, "snapshotter.log"))
		e.t.Fatalf("%v\nsnapshotter log:\n%s", err, log)
	}
	return out
}

func (e *env) client() snapshotsapi.SnapshotsClient {
	e.t.Helper()
	cc, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return snapshotsapi.NewSnapshotsClient(cc)
}

// strataSnapshots lists the snapshots the server holds, by name.
func (e *env) strataSnapshots() map[string]snapshotsapi.Kind {
	e.t.Helper()
	lc, err := e.client().List(context.Background(), &snapshotsapi.ListSnapshotsRequest{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]snapshotsapi.Kind{}
	for {
		r, err := lc.Recv()
		if err != nil {
			if !strings.Contains(err.Error(), "EOF") {
				e.t.Fatal(err)
			}
			return out
		}
		for _, i := range r.Info {
			out[i.Name] = i.Kind
		}
	}
}

// waitSnapshots waits (up to a minute) until the server holds n snapshots,
// and returns what it holds then.
func (e *env) waitSnapshots(n int) map[string]snapshotsapi.Kind {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := e.strataSnapshots()
		if len(got) == n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backendName is how containerd's metadata names a snapshot in the
// snapshotter: "namespace/N/key".
var backendName = regexp.MustCompile(`^[^/]+/[0-9]+/(.*)$`)

// agree checks that ctr snapshots ls and the server name the same
// snapshots of the same kinds. containerd drops a removed snapshot from its
// metadata at once and from the snapshotter later, in its garbage
// collector, so agree waits (up to a minute) for the two to meet before it
// reports what differs.
func (e *env) agree() {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		diff := e.disagree()
		if len(diff) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, d := range diff {
				e.t.Error(d)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// disagree lists how the server's snapshots differ from containerd's.
func (e *env) disagree() []string {
	e.t.Helper()
	var diff []string
	ours := map[string]snapshotsapi.Kind{}
	for name, k := range e.strataSnapshots() {
		m := backendName.FindStringSubmatch(name)
		if m == nil {
			diff = append(diff, fmt.Sprintf("snapshot %q in strata is not one of containerd's", name))
			continue
		}
		ours[m[1]] = k
	}
	theirs := e.containerdSnapshots()
	for k, v := range theirs {
		if ours[k] != v {
			diff = append(diff, fmt.Sprintf("containerd has %s %s, strata has it as %s", v, k, ours[k]))
		}
	}
	for k, v := range ours {
		if _, ok := theirs[k]; !ok {
			diff = append(diff, fmt.Sprintf("strata has %s %s, containerd does not", v, k))
		}
	}
	return diff
}

// containerdSnapshots lists the snapshots containerd's metadata names
// (ctr snapshots ls), by key.
func (e *env) containerdSnapshots() map[string]snapshotsapi.Kind {
	e.t.Helper()
	theirs := map[string]snapshotsapi.Kind{}
	kinds := map[string]snapshotsapi.Kind{"View": snapshotsapi.Kind_VIEW, "Active": snapshotsapi.Kind_ACTIVE, "Committed": snapshotsapi.Kind_COMMITTED}
	for _, line := range strings.Split(strings.TrimSpace(e.ctr("snapshots", "--snapshotter", "strata", "ls")), "\n")[1:] {
		f := strings.Fields(line)
		theirs[f[0]] = kinds[f[len(f)-1]]
	}
	return theirs
}

// check runs strata's store checker and fails on problems and garbage.
func (e *env) check() {
	e.t.Helper()
	storetest.CheckRoot(e.t, e.store)
}

// snapshotImages lists the store's images that hold containerd snapshots.
func (e *env) snapshotImages() []string {
	e.t.Helper()
	st, err := layerstore.Open(e.store, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	imgs, err := st.Images()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			if strings.HasPrefix(tag, "containerd-snapshot:") {
				out = append(out, tag+" "+img.ID.String())
			}
		}
	}
	slices.Sort(out)
	return out
}

// detachUnder lazily unmounts every mount under dir, deepest first.
func detachUnder(t testing.TB, dir string) {
	mi, err := session.ReadMountinfo()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	var ps []string
	for _, m := range mi {
		if strings.HasPrefix(m.Dir, dir+"/") {
			ps = append(ps, m.Dir)
		}
	}
	slices.SortFunc(ps, func(a, b string) int { return len(b) - len(a) })
	for _, p := range ps {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Errorf("cleanup: unmount %s: %v", p, err)
		}
	}
}

const image = "docker.io/library/demo:latest"

func TestContainerd_ImportRunCommit(t *testing.T) {
	e := newEnv(t)
	fx := fixtures.Dir(t)
	e.ctr("images", "import", "--snapshotter", "strata", filepath.Join(fx, "demo.docker.tar"))
	imported := e.snapshotImages()
	chain := len(e.strataSnapshots())
	if len(imported) < 2 {
		t.Fatalf("import stored %d snapshot images in strata, want the image's layers", len(imported))
	}

	t.Run("run", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(fx, "rootfs", "etc", "motd"))
		if err != nil {
			t.Fatal(err)
		}
		got := e.ctr("run", "--rm", "--snapshotter", "strata", image, "run1", "cat", "/etc/motd")
		if got != string(want) {
			t.Errorf("cat /etc/motd in the container: %q, want %q", got, want)
		}
		e.waitSnapshots(chain) // containerd removes run1's snapshot in its own time
	})

	t.Run("commit", func(t *testing.T) {
		e.ctr("run", "--snapshotter", "strata", image, "run2", "sh", "-c", "echo written > /new && rm /etc/motd")
		e.ctr("snapshots", "--snapshotter", "strata", "commit", "committed2", "run2")
		st, err := layerstore.Open(e.store, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The committed snapshot is a strata image whose top layer holds
		// the file and the whiteout.
		var found bool
		for _, name := range e.snapshotImages() {
			if slices.Contains(imported, name) {
				continue
			}
			_, tree, err := st.ImageTree(strings.Fields(name)[1])
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := tree.Lookup("new"); !ok {
				continue
			}
			found = true
			if _, ok := tree.Lookup("etc/motd"); ok {
				t.Error("committed snapshot still has /etc/motd, which the container removed")
			}
			if _, ok := tree.Lookup("etc/passwd"); !ok {
				t.Error("committed snapshot lost /etc/passwd of its parent")
			}
		}
		if !found {
			t.Fatalf("no strata image holds the committed snapshot's /new: %v", e.snapshotImages())
		}
		e.agree()
		e.ctr("snapshots", "--snapshotter", "strata", "rm", "committed2")
		e.ctr("containers", "rm", "run2")
		if left := e.waitSnapshots(chain); len(left) != chain {
			t.Errorf("after removing the commit and the container, the server holds %v", left)
		}
	})

	t.Run("second import transfers nothing", func(t *testing.T) {
		before := e.snapshotImages()
		e.ctr("images", "import", "--snapshotter", "strata", filepath.Join(fx, "demo.oci.tar"))
		e.ctr("images", "import", "--snapshotter", "strata", filepath.Join(fx, "demo.docker.tar"))
		if after := e.snapshotImages(); !slices.Equal(before, after) {
			t.Errorf("a second import of the same layers changed strata's snapshots:\nbefore %v\nafter  %v", before, after)
		}
	})

	t.Run("prune and rmi keep what containerd holds", func(t *testing.T) {
		before := e.snapshotImages()
		st, err := layerstore.Open(e.store, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := st.Prune(true); err != nil || rep.DeletedImages != 0 {
			t.Errorf("image prune -a: %+v %v", rep, err)
		}
		tag := strings.Fields(before[0])[0]
		_, err = st.RemoveImage(tag, true)
		if !errors.Is(err, layerstore.ErrInUse) || !strings.Contains(err.Error(), "(cannot be forced) - image is held by containerd's snapshotter") {
			t.Errorf("rmi -f %s: %v", tag, err)
		}
		if after := e.snapshotImages(); !slices.Equal(before, after) {
			t.Errorf("prune or rmi removed snapshots containerd holds:\nbefore %v\nafter  %v", before, after)
		}
		if got := e.ctr("run", "--rm", "--snapshotter", "strata", image, "run3", "cat", "/etc/passwd"); !strings.Contains(got, "root:") {
			t.Errorf("a container after the prune: %q", got)
		}
		e.waitSnapshots(chain) // containerd removes run3's snapshot in its own time
	})

	e.agree()
	e.check()

	t.Run("remove frees", func(t *testing.T) {
		for _, ref := range strings.Fields(e.ctr("images", "ls", "-q")) {
			e.ctr("images", "rm", "--sync", ref)
		}
		// containerd removes a snapshot from its snapshotter in its
		// garbage collector, after the removal it reports done.
		if left := e.waitSnapshots(0); len(left) != 0 {
			t.Fatalf("snapshots left after removing every image: %v", left)
		}
		st, err := layerstore.Open(e.store, nil)
		if err != nil {
			t.Fatal(err)
		}
		du, err := st.DiskUsage()
		if err != nil {
			t.Fatal(err)
		}
		if du.Layers != 0 || du.Objects != 0 {
			t.Errorf("after removing every snapshot the store holds %d layers, %d objects", du.Layers, du.Objects)
		}
	})
	e.check()
}
