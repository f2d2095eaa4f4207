package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// A foreground "run --rm" keeps no synced record and no kept top layer.
// Killed with -9 at each phase of its run (the phases -D logs), it leaves a
// container that ps -a shows in the state it truly reached (created before
// it ran, exited once it had), which holds its image against rmi (by its
// record: no lease holds it before the root is mounted), and that rm -f
// removes with its lease, its mount and whatever of it still runs (found by
// the container's own pid file, never by a machine-wide name), leaving a
// store that checks clean.
func TestRun_RmKilled(t *testing.T) {
	root := containerStore(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := readDemoConfig(t)
	for _, tc := range []struct {
		phase string
		// states ps -a may show: a kill at "process started" lands before
		// or after the run records it running (then exited: its
		// supervisor is gone).
		states []string
		ran    bool // the container's process was made (its pid file is there)
	}{
		{"network started", []string{"created"}, false},
		{"root mounted", []string{"created"}, false},
		{"bundle written", []string{"created"}, false},
		{"process started", []string{"created", "exited"}, true},
		{"process exited", []string{"exited"}, true},
		{"root unmounted", []string{"exited"}, true},
	} {
		t.Run(strings.ReplaceAll(tc.phase, " ", "-"), func(t *testing.T) {
			name := "killed-" + strings.ReplaceAll(tc.phase, " ", "-")
			// The kill lands a little after the phase's line: a run that
			// ended first (the last phases are milliseconds from its end)
			// is tried again.
			for try := 1; !killRunAt(t, root, self, name, tc.phase); try++ {
				if try == 5 {
					t.Fatalf("%d runs ended before a kill at %q landed", try, tc.phase)
				}
			}
			got := strings.Fields(mustRun(t, root, "ps", "-a", "--no-trunc", "--filter", "name="+name, "--format", "{{.ID}} {{.Names}} {{.State}}"))
			if len(got) != 3 || got[1] != name || !slices.Contains(tc.states, got[2]) {
				t.Fatalf("ps -a after a kill at %q: %q, want %s in state %q", tc.phase, got, name, tc.states)
			}
			id := got[0]
			mustRun(t, root, "check") // no problems (a dead server's lease is garbage)
			// The container's record holds its image, lease or none.
			r := runStrata(t, root, "", "rmi", "demo")
			if want := fmt.Sprintf("Error: conflict: unable to remove repository reference \"demo\" (must force) - container %s is using its referenced image %s\n", id[:12], cfg.shortID()); r.code != 1 || r.stderr != want {
				t.Errorf("rmi demo beside the killed run's container: exit %d %q, want %q", r.code, r.stderr, want)
			}
			// The container's process, by the pid file runc wrote for it.
			pid, pidStart := 0, uint64(0)
			if b, err := os.ReadFile(filepath.Join(root, "containers", id, "bundle", "run.pid")); err == nil {
				if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
					t.Fatalf("run.pid: %q", b)
				}
				pidStart, _ = layerstore.ProcessStart(pid) // 0: it has ended
			} else if tc.ran {
				t.Fatalf("no pid file of the container after a kill at %q: %v", tc.phase, err)
			}
			if out := mustRun(t, root, "rm", "-f", name); out != name+"\n" {
				t.Errorf("rm -f printed %q", out)
			}
			if got := mustRun(t, root, "ps", "-a", "-q"); got != "" {
				t.Errorf("ps -a after rm -f: %q", got)
			}
			if got := mustRun(t, root, "mounts", "-q"); got != "" {
				t.Errorf("a lease outlived the container: %q", got)
			}
			ents, _ := os.ReadDir(filepath.Join(root, "containers"))
			for _, e := range ents {
				if e.Name() != ".names" && e.Name() != ".lock" {
					t.Errorf("left under containers/: %s", e.Name())
				}
			}
			// Nothing of the container runs on: runc (which a kill of
			// strata leaves running the container) was told to kill it,
			// and has no state of it left.
			if pidStart != 0 {
				m := layerstore.MountRecord{PID: pid, PIDStart: pidStart}
				if m.Running() {
					t.Errorf("the container's process %d lives on after rm -f", pid)
				}
			}
			if out, err := exec.Command("runc", "--root", os.Getenv(runcRootEnv), "list", "-q").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("runc list after rm -f: %q %v", out, err)
			}
			storetest.CheckRoot(t, root)
		})
	}
}

// killRunAt starts "run --rm --name name" and kills it with -9 at phase. It
// reports false if the run ended before the kill landed; then the run has
// removed its container, as a run --rm that ends does.
func killRunAt(t *testing.T, root, self, name, phase string) bool {
	t.Helper()
	cmd := exec.Command(self, "--root", root, "-D", "run", "--rm", "--name", name, "demo", "-c", "sleep 0.4321")
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if !killed && strings.Contains(sc.Text(), `phase="`+phase+`"`) {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the run never reached %q: %v\n%s", phase, err, log.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signal() == syscall.SIGKILL {
		return true
	}
	if err != nil || !strings.Contains(log.String(), `phase="cleaned up"`) {
		t.Fatalf("the run ended before the kill at %q, and not well: %v\n%s", phase, err, log.String())
	}
	if got := mustRun(t, root, "ps", "-a", "-q", "--filter", "name="+name); got != "" {
		t.Fatalf("a run --rm that ended left its container: %q", got)
	}
	t.Logf("the run ended before the kill at %q landed: again", phase)
	return false
}
