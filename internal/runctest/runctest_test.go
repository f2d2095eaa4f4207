package runctest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/strata-dev/strata/layerstore"
)

// childEnv makes the test binary a test process that starts a detached
// container (the bundle the variable names) in its Process root and waits
// to be killed.
const childEnv = "STRATA_RUNCTEST_CHILD"

func TestMain(m *testing.M) {
	if bundle := os.Getenv(childEnv); bundle != "" {
		root, err := Process()
		if err == nil {
			// The container's stdio is /dev/null: a pipe it held would
			// never close.
			log := filepath.Join(bundle, "runc.log")
			if err = exec.Command("runc", "--root", root, "--log", log, "run", "--detach", "--bundle", bundle, fmt.Sprintf("runctest-%d", os.Getpid())).Run(); err != nil {
				out, _ := os.ReadFile(log)
				err = fmt.Errorf("%w: %s", err, out)
			}
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("up")
		time.Sleep(time.Hour)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// bundle writes a runc bundle whose root is busybox alone and whose
// process sleeps.
func bundle(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs busybox (busybox-static)")
	}
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs},
		Process: &specs.Process{Args: []string{"/bin/busybox", "sleep", "600"}, Cwd: "/"},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
	}
	j, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), j, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A test process killed with its container running leaves it in its own
// root; the next test process's ReapStranded deletes it (the container's
// process is gone) and the root with it.
func TestReapStranded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runc")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("runc is needed (.ci/run installs it): %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(self)
	child.Env = append(os.Environ(), childEnv+"="+bundle(t))
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	start, serr := layerstore.ProcessStart(child.Process.Pid)
	root := filepath.Join(base(), fmt.Sprintf("%d-%d", child.Process.Pid, start), "process")
	id := fmt.Sprintf("runctest-%d", child.Process.Pid)
	t.Cleanup(func() {
		if _, err := os.Stat(root); err == nil { // the test failed before reaping it
			deleteForce(root, id)
			os.RemoveAll(filepath.Dir(root))
		}
	})
	if strings.TrimSpace(line) != "up" || serr != nil {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("the child: %q %v", line, serr)
	}
	var state specs.State
	out, err := exec.Command("runc", "--root", root, "state", id).Output()
	if err != nil || json.Unmarshal(out, &state) != nil || state.Pid <= 0 {
		t.Fatalf("runc state of the child's container: %s %v", out, err)
	}
	pidStart, err := layerstore.ProcessStart(state.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// A live process's containers are not stranded.
	ReapStranded()
	if got := List(t, root); len(got) != 1 {
		t.Fatalf("ReapStranded beside a live test process: its containers are %q", got)
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	if n := ReapStranded(); n < 1 {
		t.Errorf("ReapStranded deleted %d containers", n)
	}
	if _, err := os.Stat(filepath.Dir(root)); !os.IsNotExist(err) {
		t.Errorf("the dead process's directory: %v", err)
	}
	m := layerstore.MountRecord{PID: state.Pid, PIDStart: pidStart}
	if m.Running() {
		t.Errorf("the stranded container's process %d lives on", state.Pid)
	}
}
