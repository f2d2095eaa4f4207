package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/runctest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// superviseEnv makes the test binary a detached supervisor: "root\nrunc-root\nid".
const superviseEnv = "STRATA_CONTAINER_TEST_SUPERVISE"

// fillEnv makes the test binary fill a volume: "rootfs\ndst\nvolume-dir".
const fillEnv = "STRATA_CONTAINER_TEST_FILL"

func TestMain(m *testing.M) {
	if v := os.Getenv(fillEnv); v != "" {
		a := strings.Split(v, "\n")
		if err := fillVolume(a[0], a[1], a[2]); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv(superviseEnv); v != "" {
		a := strings.Split(v, "\n")
		st, err := layerstore.Open(a[0], nil)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		c, err := Open(st, Config{Runtime: &Runtime{Root: a[1]}})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		code, err := c.Run(context.Background(), a[2], Stdio{}, func(err error) {
			if err == nil {
				fmt.Println("started")
			}
		})
		if err != nil {
			fmt.Println("error:", err)
		}
		os.Exit(code)
	}
	code := m.Run()
	runctest.Finish()
	os.Exit(code)
}

// openContainers opens a store holding the fixture image as demo:latest
// and its containers; the test's cleanup checks the store.
func openContainers(t testing.TB) (*Containers, *layerstore.Store) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, runc")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("runc is needed (.ci/run installs it): %v", err)
	}
	root := filepath.Join(t.TempDir(), "store")
	// As the CLI opens it: a container's record holds its image.
	st := storetest.OpenAt(t, root, &layerstore.Options{Users: func() ([]layerstore.ImageUser, error) {
		return ImageUsers(RecordsDir(root))
	}})
	storetest.Load(t, st, filepath.Join(fixtures.Dir(t), "oci"))
	c, err := Open(st, Config{Runtime: &Runtime{Root: runctest.Root(t)}, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever a failed test left: removed, so check sees the store clean.
		recs, _ := c.records.List()
		for _, r := range recs {
			if err := c.Remove(context.Background(), r.ID, true, true); err != nil {
				t.Errorf("cleanup: remove container %s: %v", r.Name, err)
			}
		}
	})
	return c, st
}

func runFG(t *testing.T, c *Containers, ref string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code, err := c.Run(context.Background(), ref, Stdio{Stdout: &out, Stderr: &out}, nil)
	if err != nil {
		t.Fatalf("run %s: %v\n%s", ref, err, out.String())
	}
	return out.String(), code
}

func leases(t *testing.T, st *layerstore.Store) int {
	t.Helper()
	ms, err := st.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

// A container keeps its writes across runs until it is removed; its log
// holds every run's output.
func TestContainers_WritableLayerLivesWithTheContainer(t *testing.T) {
	c, st := openContainers(t)
	rec, err := c.Create(context.Background(), "demo", CreateOptions{Name: "keeper", Options: Options{
		Cmd: []string{"-c", "cat /data 2>/dev/null || echo first; echo again > /data; exit 3"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.State.Status != Created || rec.MountID == "" {
		t.Errorf("created: %+v", rec)
	}
	if out, code := runFG(t, c, "keeper"); out != "first\n" || code != 3 {
		t.Errorf("first run: %q, exit %d", out, code)
	}
	got, _ := c.records.Get("keeper")
	if got.State.Status != Exited || got.State.ExitCode != 3 || got.State.FinishedAt.Before(got.State.StartedAt) {
		t.Errorf("after the first run: %+v", got.State)
	}
	if out, code := runFG(t, c, rec.ID[:12]); out != "again\n" || code != 3 {
		t.Errorf("second run: %q, exit %d (want the first run's write)", out, code)
	}
	var logged []string
	if err := ReadLog(context.Background(), c.LogPath(rec.ID), LogOptions{Tail: -1}, func(e LogEntry) error {
		logged = append(logged, e.Stream+":"+e.Log)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(logged, "") != "stdout:first\nstdout:again\n" {
		t.Errorf("log: %q", logged)
	}
	if err := c.Remove(context.Background(), "keeper", false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.records.Dir(rec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container directory after rm: %v", err)
	}
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after rm", n)
	}
	if _, err := os.Stat(st.MountDir(rec.MountID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("top layer after rm: %v", err)
	}
}

// Two containers of one image never see each other's writes; --rm removes
// a container when it ends.
func TestContainers_IsolationAndAutoRemove(t *testing.T) {
	c, st := openContainers(t)
	a, err := c.Create(context.Background(), "demo", CreateOptions{Options: Options{Cmd: []string{"-c", "echo a > /etc/motd; cat /etc/motd"}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Create(context.Background(), "demo", CreateOptions{AutoRemove: true, Options: Options{Cmd: []string{"-c", "cat /etc/motd"}}})
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := runFG(t, c, a.ID); out != "a\n" {
		t.Errorf("a: %q", out)
	}
	if out, _ := runFG(t, c, b.ID); out != "changed\n" {
		t.Errorf("b sees %q, want the image's motd", out)
	}
	if _, err := c.records.Get(b.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("--rm container after it ended: %v", err)
	}
	if n := leases(t, st); n != 1 {
		t.Errorf("%d leases, want a's only", n)
	}
}

// Bad input leaves nothing behind.
func TestContainers_CreateFails(t *testing.T) {
	c, st := openContainers(t)
	if _, err := c.Create(context.Background(), "nosuch", CreateOptions{}); !errors.Is(err, layerstore.ErrNotFound) {
		t.Errorf("missing image: %v", err)
	}
	if _, err := c.Create(context.Background(), "demo", CreateOptions{Name: "one"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(context.Background(), "demo", CreateOptions{Name: "one"}); !errors.Is(err, ErrNameInUse) {
		t.Errorf("name in use: %v", err)
	}
	if _, err := c.Create(context.Background(), "demo", CreateOptions{StopSignal: "SIGNOPE"}); err == nil {
		t.Error("bad stop signal accepted")
	}
	if _, err := c.Create(context.Background(), "demo", CreateOptions{Options: Options{Network: "bridge"}}); err == nil {
		t.Error("bad network accepted")
	}
	// A bad user is found at start: exit 125, the container stays created.
	rec, err := c.Create(context.Background(), "demo", CreateOptions{Options: Options{User: "nosuchuser"}})
	if err != nil {
		t.Fatal(err)
	}
	code, err := c.Run(context.Background(), rec.ID, Stdio{}, nil)
	if code != ExitRuntimeFailed || err == nil || !strings.Contains(err.Error(), "unable to find user nosuchuser") {
		t.Errorf("bad user: exit %d, %v", code, err)
	}
	recs, _ := c.records.List()
	if len(recs) != 2 || leases(t, st) != 2 {
		t.Errorf("%d records, %d leases: want the two created containers only", len(recs), leases(t, st))
	}
}

// startDetached runs container id under a supervisor process of its own, as
// run -d does, and returns once the container runs.
func startDetached(t *testing.T, c *Containers, id string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), superviseEnv+"="+c.st.Root()+"\n"+c.rt.Root+"\n"+id)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	for !strings.Contains(out.String(), "started") {
		select {
		case <-exited:
			t.Fatalf("supervisor ended: %s", out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return cmd
}

func TestContainers_DetachedStopKill(t *testing.T) {
	c, _ := openContainers(t)
	ctx := context.Background()
	trapping, err := c.Create(ctx, "demo", CreateOptions{Name: "trap", Options: Options{
		Cmd: []string{"-c", "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	startDetached(t, c, trapping.ID)
	if got, _ := c.records.Get("trap"); got.State.Current().Status != Running {
		t.Fatalf("after start: %+v", got.State)
	}
	// The trap is set once "up" is logged: a SIGTERM before that reaches a
	// PID 1 with no handler, which ignores it (as under docker).
	for deadline := time.Now().Add(20 * time.Second); ; {
		var logged strings.Builder
		ReadLog(ctx, c.LogPath(trapping.ID), LogOptions{Tail: -1}, func(e LogEntry) error { logged.WriteString(e.Log); return nil })
		if logged.String() == "up\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container logged %q, not up", logged.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Remove(ctx, "trap", false, false); !errors.Is(err, ErrRunning) {
		t.Errorf("rm of a running container: %v", err)
	}
	rec, err := c.Stop(ctx, "trap", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State.Status != Exited || rec.State.ExitCode != 0 {
		t.Errorf("stopped with its trap: %+v", rec.State)
	}
	var logged strings.Builder
	ReadLog(ctx, c.LogPath(rec.ID), LogOptions{Tail: -1}, func(e LogEntry) error { logged.WriteString(e.Log); return nil })
	if logged.String() != "up\nbye\n" {
		t.Errorf("log: %q", logged.String())
	}

	// No trap: sh as PID 1 ignores SIGTERM, so stop kills after the timeout.
	deaf, err := c.Create(ctx, "demo", CreateOptions{Name: "deaf", Options: Options{Cmd: []string{"-c", "while :; do sleep 0.05; done"}}})
	if err != nil {
		t.Fatal(err)
	}
	startDetached(t, c, deaf.ID)
	zero := 0
	if rec, err = c.Stop(ctx, "deaf", &zero); err != nil || rec.State.ExitCode != 137 {
		t.Errorf("stop -t 0: %v, %+v", err, rec)
	}
	if err := c.Kill("deaf", syscall.SIGKILL); !errors.Is(err, ErrNotRunning) {
		t.Errorf("kill of a stopped container: %v", err)
	}
}

// A supervisor killed with -9 leaves a container that reads as exited and
// that rm cleans up, top layer, stale mount and all.
func TestContainers_SupervisorKilled(t *testing.T) {
	c, st := openContainers(t)
	ctx := context.Background()
	rec, err := c.Create(ctx, "demo", CreateOptions{Name: "orphan", Options: Options{Cmd: []string{"-c", "while :; do sleep 0.05; done"}}})
	if err != nil {
		t.Fatal(err)
	}
	sup := startDetached(t, c, rec.ID)
	if err := sup.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Wait(ctx, "orphan")
	if err != nil {
		t.Fatal(err)
	}
	if got.State.Status != Exited || got.State.ExitCode != ExitUnknown {
		t.Errorf("after its supervisor died: %+v", got.State)
	}
	if err := c.Remove(ctx, "orphan", true, false); err != nil {
		t.Fatal(err)
	}
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after rm", n)
	}
}

// rm -f of a container whose supervisor is SIGSTOPped (it cannot record the
// exit) waits a bounded time, then kills the supervisor and cleans up, as
// docker does with a stuck shim: the container's process, the supervisor,
// the lease and the record are gone.
func TestContainers_RemoveForcedStoppedSupervisor(t *testing.T) {
	c, st := openContainers(t)
	c.stuckAfter = time.Second
	ctx := context.Background()
	rec, err := c.Create(ctx, "demo", CreateOptions{Name: "stuck", Options: Options{Cmd: []string{"-c", "while :; do sleep 0.05; done"}}})
	if err != nil {
		t.Fatal(err)
	}
	sup := startDetached(t, c, rec.ID)
	running, err := c.records.Get(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	pid := running.State.Pid
	pidStart, err := layerstore.ProcessStart(pid)
	if err != nil || running.State.Supervisor != sup.Process.Pid {
		t.Fatalf("the running container: %+v (%v)", running.State, err)
	}
	if err := sup.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Process.Signal(syscall.SIGCONT) })
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second) // a bound for the test, far above the second
	defer cancel()
	if err := c.Remove(rctx, "stuck", true, false); err != nil {
		t.Fatalf("rm -f: %v", err)
	}
	if _, err := c.records.Get(rec.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the record after rm -f: %v", err)
	}
	alive := func(pid int, start uint64) bool {
		m := layerstore.MountRecord{PID: pid, PIDStart: start}
		return m.Running()
	}
	if alive(pid, pidStart) {
		t.Errorf("the container's process %d lives on", pid)
	}
	if alive(sup.Process.Pid, running.State.SupervisorStart) {
		t.Errorf("the stuck supervisor %d lives on", sup.Process.Pid)
	}
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after rm -f", n)
	}
	if out, err := exec.Command("runc", "--root", c.rt.Root, "list", "-q").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("runc list after rm -f: %q %v", out, err)
	}
}

// A container keeps the runtime state directory (runc --root) it was made
// with: its start, and an rm -f from a caller with another one, use the
// record's, so the container is killed and nothing of it is left in runc.
// A record without one (made before it was kept) that the caller's runtime
// does not know is refused, its supervisor left alive, not taken as stuck.
func TestContainers_RecordKeepsRuncRoot(t *testing.T) {
	c, st := openContainers(t)
	other, err := Open(st, Config{Runtime: &Runtime{Root: runctest.Root(t)}, StuckAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alive := func(pid int, start uint64) bool {
		m := layerstore.MountRecord{PID: pid, PIDStart: start}
		return m.Running()
	}
	runcList := func(root string) string {
		out, err := exec.Command("runc", "--root", root, "list", "-q").CombinedOutput()
		if err != nil {
			t.Fatalf("runc list: %v: %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	start := func(rt *Containers, name string, old bool) (*Record, *exec.Cmd) {
		rec, err := c.Create(ctx, "demo", CreateOptions{Name: name, Options: Options{Cmd: []string{"-c", "while :; do sleep 0.05; done"}, Network: NetworkNone}})
		if err != nil {
			t.Fatal(err)
		}
		if rec.RuncRoot != c.rt.Root {
			t.Fatalf("the record's runc root: %q, want %q", rec.RuncRoot, c.rt.Root)
		}
		if old {
			if _, err := c.records.Update(rec.ID, func(r *Record) error { r.RuncRoot = ""; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		sup := startDetached(t, rt, rec.ID)
		running, err := c.records.Get(rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		return running, sup
	}

	t.Run("kept", func(t *testing.T) {
		// Started by a supervisor whose own root is the other one.
		rec, _ := start(other, "kept", false)
		if got := runcList(c.rt.Root); got != rec.ID {
			t.Fatalf("runc under the record's root knows %q, want %s", got, rec.ID)
		}
		pidStart, err := layerstore.ProcessStart(rec.State.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Remove(ctx, rec.ID, true, false); err != nil {
			t.Fatalf("rm -f with another runc root: %v", err)
		}
		if _, err := c.records.Get(rec.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("the record after rm -f: %v", err)
		}
		if alive(rec.State.Pid, pidStart) {
			t.Errorf("the container's process %d lives on after rm -f", rec.State.Pid)
		}
		if got := runcList(c.rt.Root); got != "" {
			t.Errorf("runc still knows %q after rm -f", got)
		}
	})

	t.Run("old record", func(t *testing.T) {
		rec, _ := start(c, "old", true)
		pidStart, err := layerstore.ProcessStart(rec.State.Pid)
		if err != nil {
			t.Fatal(err)
		}
		err = other.Remove(ctx, rec.ID, true, false)
		if err == nil || !strings.Contains(err.Error(), "STRATA_RUNC_ROOT") {
			t.Fatalf("rm -f of a container the runtime does not know: %v", err)
		}
		got, err := c.records.Get(rec.ID)
		if err != nil || got.State.Status != Running {
			t.Fatalf("after the refused rm -f: %+v, %v", got, err)
		}
		if !alive(rec.State.Supervisor, rec.State.SupervisorStart) || !alive(rec.State.Pid, pidStart) {
			t.Errorf("the refused rm -f killed the supervisor %d or the container %d", rec.State.Supervisor, rec.State.Pid)
		}
		// With its own root (the caller's, as the record names none) rm -f works.
		if err := c.Remove(ctx, rec.ID, true, false); err != nil {
			t.Fatal(err)
		}
		if alive(rec.State.Pid, pidStart) {
			t.Errorf("the container's process %d lives on after rm -f", rec.State.Pid)
		}
	})
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after rm -f", n)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A kept top layer whose container is gone (a crash between the lease and
// the record, or inside session.Start with Keep) is found by its owner and
// removed; a container's own is left alone.
func TestContainers_RemoveOrphans(t *testing.T) {
	c, st := openContainers(t)
	ctx := context.Background()
	kept, err := c.Create(ctx, "demo", CreateOptions{Name: "kept", Options: Options{Cmd: []string{"-c", "true"}, Network: NetworkNone}})
	if err != nil {
		t.Fatal(err)
	}
	// What a crash inside Start(Keep) leaves: a kept lease with a written
	// top layer, and no record.
	lost := NewID()
	dir := t.TempDir()
	s, err := session.Start(ctx, st, "demo", dir, session.Options{ID: lost[:12], Keep: true, Owner: owner(lost)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("lost"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// And what one inside Prepare leaves.
	lost2 := NewID()
	if _, err := session.Prepare(ctx, st, "demo", session.Options{ID: lost2[:12], Keep: true, Owner: owner(lost2)}); err != nil {
		t.Fatal(err)
	}
	ids, size, err := c.RemoveOrphans()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || !slices.Contains(ids, lost) || !slices.Contains(ids, lost2) || size <= 0 {
		t.Errorf("removed %q (%d bytes), want %s and %s", ids, size, lost[:12], lost2[:12])
	}
	ms, err := st.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != kept.MountID {
		t.Errorf("leases left: %v, want only the container's %s", ms, kept.MountID)
	}
	if _, err := os.Stat(session.UpperDir(st, lost[:12])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the orphan's top layer is still there: %v", err)
	}
	if ids, _, err := c.RemoveOrphans(); err != nil || len(ids) != 0 {
		t.Errorf("a second pass removed %q, %v", ids, err)
	}
}

// runc killed with -9 before the container exists, while it is being
// created (its init waits to be started) and while it runs: the run ends
// as exited, the container's processes are gone, rm cleans up and the
// store checks clean.
func TestContainers_RuntimeKilled(t *testing.T) {
	c, st := openContainers(t)
	ctx := context.Background()
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The wrapper runs runc's "run" in the background, notes its pid, and
	// kills it where the case says; every other subcommand is runc's own.
	wrapper := filepath.Join(dir, "runc")
	script := `#!/bin/sh
case " $* " in *" run "*) ;; *) exec ` + runc + ` "$@" ;; esac
for id; do :; done
case "$(cat ` + dir + `/point)" in
start) kill -9 $$ ;;
esac
` + runc + ` "$@" &
echo $! > ` + dir + `/runc.pid
if [ "$(cat ` + dir + `/point)" = create ]; then
	while [ ! -e "$2/$id/state.json" ]; do sleep 0.01; done
	kill -9 $!
fi
wait $!
`
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c.rt.Binary = wrapper
	for _, point := range []string{"start", "create", "run"} {
		t.Run(point, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "point"), []byte(point), 0o644); err != nil {
				t.Fatal(err)
			}
			rec, err := c.Create(ctx, "demo", CreateOptions{Name: "rk-" + point, Options: Options{Cmd: []string{"-c", "while :; do sleep 0.05; done"}, Network: NetworkNone}})
			if err != nil {
				t.Fatal(err)
			}
			started := make(chan int, 1)
			done := make(chan error, 1)
			go func() {
				_, err := c.Run(ctx, rec.ID, Stdio{}, func(err error) {
					if err == nil {
						r, _ := c.records.Get(rec.ID)
						started <- r.State.Pid
					}
				})
				done <- err
			}()
			var pid int
			if point == "run" {
				select {
				case pid = <-started:
				case err := <-done:
					t.Fatalf("the run ended before it started: %v", err)
				}
				b, err := os.ReadFile(filepath.Join(dir, "runc.pid"))
				if err != nil {
					t.Fatal(err)
				}
				var runcPid int
				fmt.Sscan(string(b), &runcPid)
				if err := syscall.Kill(runcPid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the run did not end after runc was killed")
			}
			got, err := c.Wait(ctx, rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State.Status != Exited || got.State.ExitCode == 0 {
				t.Errorf("after runc was killed: %+v", got.State)
			}
			if pid > 0 {
				// Gone, or dead and not yet reaped by the init it went to.
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
					t.Errorf("the container's process %d outlived the run: %s", pid, b)
				}
			}
			if out, err := exec.Command(runc, "--root", c.rt.Root, "list", "-q").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("runc still knows containers: %q %v", out, err)
			}
			if err := c.Remove(ctx, rec.ID, true, false); err != nil {
				t.Fatal(err)
			}
			if n := leases(t, st); n != 0 {
				t.Errorf("%d leases after rm", n)
			}
		})
	}
}

// A container strata run makes (StartNow) that fails before its root is
// mounted (here: no slirp4netns for its private network) still holds its
// image, as a created one does: rmi is refused until rm, and a later start
// finds its top layer.
func TestContainers_RunFailedBeforeRootKeepsImage(t *testing.T) {
	c, st := openContainers(t)
	ctx := context.Background()
	rec, err := c.Create(ctx, "demo", CreateOptions{Name: "nonet", StartNow: true, Options: Options{Network: NetworkPrivate}})
	if err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("PATH")
	t.Setenv("PATH", t.TempDir()) // no slirp4netns
	if _, err := c.Run(ctx, rec.ID, Stdio{}, nil); err == nil || !strings.Contains(err.Error(), "slirp4netns") {
		t.Fatalf("Run without slirp4netns: %v", err)
	}
	os.Setenv("PATH", path)
	if n := leases(t, st); n != 1 {
		t.Errorf("%d leases after the failed run, want its kept top layer's", n)
	}
	if _, err := st.RemoveImage("demo", false); !errors.Is(err, layerstore.ErrInUse) {
		t.Errorf("rmi of the created container's image: %v", err)
	}
	if err := c.Remove(ctx, rec.ID, false, true); err != nil {
		t.Fatal(err)
	}
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after rm", n)
	}
	storetest.Check(t, st)
}

// A container whose run was killed after its record was made and before
// its root's lease (Create with StartNow, then nothing: the kill) holds its
// image by its record: rmi refuses it in docker's words, prune -a keeps it,
// and forced rmi only untags it.
func TestContainers_RecordHoldsImageWithoutALease(t *testing.T) {
	c, st := openContainers(t)
	rec, err := c.Create(context.Background(), "demo", CreateOptions{Name: "unleased", StartNow: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := leases(t, st); n != 0 {
		t.Fatalf("%d leases: the test wants none", n)
	}
	img, err := st.ResolveImage("demo")
	if err != nil {
		t.Fatal(err)
	}
	short := img.ID.Encoded()[:12]
	_, err = st.RemoveImage("demo", false)
	if want := fmt.Sprintf(`conflict: unable to remove repository reference "demo" (must force) - container %s is using its referenced image %s`, rec.ID[:12], short); err == nil || err.Error() != want || !errors.Is(err, layerstore.ErrInUse) {
		t.Errorf("rmi demo: %v\nwant %s", err, want)
	}
	_, err = st.RemoveImage(short, false)
	if want := fmt.Sprintf("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s", short, rec.ID[:12]); err == nil || err.Error() != want {
		t.Errorf("rmi ID: %v\nwant %s", err, want)
	}
	if rep, err := st.Prune(true); err != nil || rep.DeletedImages != 0 {
		t.Errorf("prune -a: %+v %v", rep, err)
	}
	rep, err := st.RemoveImage("demo", true)
	if err != nil || len(rep.Untagged) != 1 || rep.DeletedImages != 0 {
		t.Errorf("rmi -f demo: %+v %v (want untagged only)", rep, err)
	}
	if _, err := st.ResolveImage(img.ID.String()); err != nil {
		t.Errorf("the container's image went: %v", err)
	}
	out, code := runFG(t, c, "unleased")
	if code != 0 {
		t.Errorf("the container after rmi -f: exit %d %q", code, out)
	}
	if err := c.Remove(context.Background(), "unleased", false, false); err != nil {
		t.Fatal(err)
	}
	if rep, err := st.Prune(false); err != nil || rep.DeletedImages != 1 {
		t.Errorf("prune once the container went: %+v %v", rep, err)
	}
}

// A running container's image cannot be removed by ID, forced or not
// (docker's hard conflict); by tag, forced, it is only untagged.
func TestContainers_RunningContainerHoldsImage(t *testing.T) {
	c, st := openContainers(t)
	rec, err := c.Create(context.Background(), "demo", CreateOptions{Name: "up", Options: Options{Cmd: []string{"-c", "while :; do sleep 0.05; done"}}})
	if err != nil {
		t.Fatal(err)
	}
	startDetached(t, c, rec.ID)
	img, err := st.ResolveImage("demo")
	if err != nil {
		t.Fatal(err)
	}
	short := img.ID.Encoded()[:12]
	_, err = st.RemoveImage(short, true)
	if want := fmt.Sprintf("conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", short, rec.ID[:12]); err == nil || err.Error() != want {
		t.Errorf("rmi -f ID: %v\nwant %s", err, want)
	}
	if rep, err := st.RemoveImage("demo", true); err != nil || len(rep.Untagged) != 1 || rep.DeletedImages != 0 {
		t.Errorf("rmi -f demo: %+v %v (want untagged only)", rep, err)
	}
	now := 0 // its shell ignores SIGTERM as PID 1
	if _, err := c.Stop(context.Background(), "up", &now); err != nil {
		t.Fatal(err)
	}
}

// A created container whose first run was killed between its kept top
// layer's lease and its directory (session.Start makes the lease first)
// starts on that lease: its top layer is not made twice, and rm removes
// lease and layer, leaving the store clean.
func TestContainers_StartAfterLeaseWithoutDirectory(t *testing.T) {
	c, st := openContainers(t)
	ctx := context.Background()
	rec, err := c.Create(ctx, "demo", CreateOptions{Name: "halfmade", StartNow: true, Options: Options{Cmd: []string{"-c", "echo ran > /was-here; cat /was-here"}, Network: NetworkNone}})
	if err != nil {
		t.Fatal(err)
	}
	// The lease as a killed run left it: kept, its server a process that
	// has ended, no directory under mounts/.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := st.AddMount(layerstore.MountRecord{ID: rec.MountID, Image: rec.Image, Ref: rec.Image.String(), Keep: true, Owner: owner(rec.ID), PID: dead.Process.Pid, PIDStart: 1, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(st.MountDir(rec.MountID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the top layer's directory: %v, want none", err)
	}
	var out bytes.Buffer
	code, err := c.Run(ctx, rec.ID, Stdio{Stdout: &out, Stderr: &out}, nil)
	if err != nil || code != 0 || out.String() != "ran\n" {
		t.Fatalf("run on the lease a kill left: %d %v %q", code, err, out.String())
	}
	if n := leases(t, st); n != 1 {
		t.Errorf("%d leases after the run, want its top layer's one", n)
	}
	if err := c.Remove(ctx, rec.ID, false, true); err != nil {
		t.Fatal(err)
	}
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after rm", n)
	}
	storetest.Check(t, st)
}

// A container whose kept top layer was lost after it ran is not started on
// an empty one: the run fails naming the layer, nothing runs, and check
// reports the lease as a problem until rm removes it.
func TestContainers_StartAfterTopLayerLost(t *testing.T) {
	c, st := openContainers(t)
	ctx := context.Background()
	for _, startNow := range []bool{true, false} {
		rec, err := c.Create(ctx, "demo", CreateOptions{StartNow: startNow, Options: Options{Network: NetworkNone,
			Cmd: []string{"-c", "cat /important 2>/dev/null || echo MISSING; echo data > /important"}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"MISSING\n", "data\n"} {
			if out, code := runFG(t, c, rec.ID); out != want || code != 0 {
				t.Fatalf("startNow %v: run: %q, exit %d, want %q", startNow, out, code, want)
			}
		}
		if err := os.RemoveAll(st.MountDir(rec.MountID)); err != nil {
			t.Fatal(err)
		}
		r, err := st.Check(false)
		if err != nil || len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Error(), rec.MountID) {
			t.Errorf("startNow %v: check of a kept lease without its directory: %v %v, want one problem naming it", startNow, r.Problems, err)
		}
		var out bytes.Buffer
		code, err := c.Run(ctx, rec.ID, Stdio{Stdout: &out, Stderr: &out}, nil)
		if !errors.Is(err, layerstore.ErrCorrupt) || code != ExitRuntimeFailed || out.Len() != 0 {
			t.Errorf("startNow %v: run on a lost top layer: exit %d, %v, %q; want %d, ErrCorrupt, no output", startNow, code, err, out.String(), ExitRuntimeFailed)
		}
		if _, err := os.Lstat(st.MountDir(rec.MountID)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("startNow %v: the lost top layer's directory after the run: %v, want none", startNow, err)
		}
		if err := c.Remove(ctx, rec.ID, false, true); err != nil {
			t.Fatal(err)
		}
	}
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after rm", n)
	}
	storetest.Check(t, st)
}

// rm racing a start: rm fails (the container is starting) and the start
// runs to its end, or rm comes first and the start finds no container;
// never a start torn down half-way, never a hang.
func TestContainers_RemoveRacingStart(t *testing.T) {
	c, st := openContainers(t)
	ctx := context.Background()
	for i := range 12 {
		rec, err := c.Create(ctx, "demo", CreateOptions{Options: Options{Network: NetworkNone, Cmd: []string{"-c", "echo ran"}}})
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			code int
			out  string
			err  error
		}
		ran := make(chan result, 1)
		go func() {
			var out syncBuf
			code, err := c.Run(ctx, rec.ID, Stdio{Stdout: &out, Stderr: &out}, nil)
			ran <- result{code, out.String(), err}
		}()
		// From at once to well into the start (runc's), in steps.
		time.Sleep(time.Duration(i) * 15 * time.Millisecond)
		rmErr := c.Remove(ctx, rec.ID, false, true)
		var r result
		select {
		case r = <-ran:
		case <-time.After(2 * time.Minute): // a hang, not a timing
			t.Fatalf("round %d: the start racing rm did not end", i)
		}
		t.Logf("round %d: rm: %v; start: exit %d, %v", i, rmErr, r.code, r.err)
		switch {
		case r.err == nil && (r.code != 0 || r.out != "ran\n"):
			t.Errorf("round %d: the start rm raced: exit %d, %q; want 0, \"ran\"", i, r.code, r.out)
		case r.err != nil && !errors.Is(r.err, ErrNotFound) && !errors.Is(r.err, ErrRunning):
			t.Errorf("round %d: the start rm raced failed: %v", i, r.err)
		case r.err != nil && rmErr != nil:
			t.Errorf("round %d: both failed: rm %v, start %v", i, rmErr, r.err)
		case rmErr != nil && !errors.Is(rmErr, ErrRunning):
			t.Errorf("round %d: rm: %v, want it removed or refused as starting", i, rmErr)
		}
		if rmErr != nil {
			if err := c.Remove(ctx, rec.ID, false, true); err != nil {
				t.Fatalf("round %d: rm after the start: %v", i, err)
			}
		}
		if _, err := c.records.Get(rec.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("round %d: the record after rm: %v", i, err)
		}
	}
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after the rounds", n)
	}
	storetest.Check(t, st)
}
