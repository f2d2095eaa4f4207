package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/storetest"
)

// A foreground "run --rm" keeps no synced record and no kept top layer.
// Killed with -9 at each phase of its run (the phases -D logs), it leaves a
// container that ps -a shows as created or exited (or none at all), that rm -f
// removes with its lease, its mount and whatever of it still runs, and a
// store that checks clean.
func TestRun_RmKilled(t *testing.T) {
	root := containerStore(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, phase := range []string{"network started", "root mounted", "bundle written", "process started", "process exited", "root unmounted"} {
		t.Run(strings.ReplaceAll(phase, " ", "-"), func(t *testing.T) {
			name := "killed-" + strings.ReplaceAll(phase, " ", "-")
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
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("the run was not killed at %q (it ended first: %v)\n%s", phase, err, log.String())
			}
			got := mustRun(t, root, "ps", "-a", "--filter", "name="+name, "--format", "{{.Names}} {{.State}}")
			mustRun(t, root, "check") // no problems (a dead server's lease is garbage)
			switch got {
			case "": // nothing of it recorded yet, or already removed
			case name + " created\n", name + " exited\n": // before it ran, or after
				if out := mustRun(t, root, "rm", "-f", name); out != name+"\n" {
					t.Errorf("rm -f printed %q", out)
				}
			default:
				t.Fatalf("ps -a after a kill at %q: %q", phase, got)
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
			// strata leaves running the container) was told to kill it.
			deadline := time.Now().Add(10 * time.Second)
			for {
				out, _ := exec.Command("pgrep", "-f", "sleep 0.4321").Output()
				if len(out) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("the container's process lives on: %s", out)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			storetest.CheckRoot(t, root)
		})
	}
}
