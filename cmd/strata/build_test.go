package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/strata-dev/strata/internal/runctest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/syncbuf"
	"github.com/strata-dev/strata/layerstore"
)

func TestBuild_CLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, runc")
	}
	root := storetest.Root(t)
	loadDemo(t, root)

	// A Dockerfile alone on stdin; -q prints the ID only.
	r := runStrata(t, root, "FROM demo\nLABEL a=b\nCMD [\"true\"]\n", "build", "-q", "-t", "cli:1", "-")
	if r.err != nil || !strings.HasPrefix(r.stdout, "sha256:") || strings.Count(r.stdout, "\n") != 1 || r.stderr != "" {
		t.Fatalf("build -q -: %v\nstdout %q\nstderr %q", r.err, r.stdout, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if got := mustRun(t, root, "inspect", "-f", "{{.Id}}", "cli:1"); strings.TrimSpace(got) != id {
		t.Errorf("cli:1 is %s, build printed %s", got, id)
	}

	// A tar context on stdin, with --iidfile and plain progress on stderr.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for name, body := range map[string]string{"Dockerfile": "FROM demo\nCOPY f.txt /f.txt\nRUN cat /f.txt > /g.txt\n", "f.txt": "from tar\n"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	iid := filepath.Join(t.TempDir(), "iid")
	r = runStrata(t, root, tb.String(), "build", "--network", "none", "--iidfile", iid, "-t", "cli:2", "-")
	if r.err != nil {
		t.Fatalf("build of a tar context: %v\n%s", r.err, r.stderr)
	}
	if b, _ := os.ReadFile(iid); string(b) != strings.TrimSpace(r.stdout) {
		t.Errorf("--iidfile holds %q, stdout %q", b, r.stdout)
	}
	for _, want := range []string{"[2/3] COPY f.txt /f.txt", "[3/3] RUN cat /f.txt > /g.txt", "naming to cli:2 done"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, r.stderr)
		}
	}
	// Again: every step from the cache.
	r = runStrata(t, root, tb.String(), "build", "--network", "none", "-t", "cli:2", "-")
	if r.err != nil || strings.Count(r.stderr, "CACHED") != 2 {
		t.Errorf("rebuild: %v, %d CACHED:\n%s", r.err, strings.Count(r.stderr, "CACHED"), r.stderr)
	}

	// Intermediate images are hidden from images, shown with -a, and go
	// with builder prune.
	shown := strings.Count(mustRun(t, root, "images", "-q"), "\n")
	all := strings.Count(mustRun(t, root, "images", "-a", "-q"), "\n")
	if shown != 3 || all <= shown {
		t.Errorf("images: %d, images -a: %d; want 3 (demo, cli:1, cli:2) and more", shown, all)
	}
	mustRun(t, root, "builder", "prune", "-f")
	if n := strings.Count(mustRun(t, root, "images", "-a", "-q"), "\n"); n != 3 {
		t.Errorf("after builder prune: images -a lists %d, want 3", n)
	}

	// A failing RUN: a failed command, its status and output on stderr.
	r = runStrata(t, root, "FROM demo\nRUN echo oops; exit 7\n", "build", "--network", "none", "-")
	if r.err == nil || r.code == 0 || !strings.Contains(r.stderr, "exit code: 7") || !strings.Contains(r.stderr, "oops") || !strings.Contains(r.stderr, "Dockerfile:2") {
		t.Errorf("failing RUN: code %d, err %v\n%s", r.code, r.err, r.stderr)
	}
	// The brief's example: no space after CMD.
	r = runStrata(t, root, "FROM demo\nRUN true\nENV A=1\nLABEL a=b\nEXPOSE 80\nCMD[\"ECHO\",\"IMAGE CREATOR\"]\n", "build", "-")
	if r.err == nil || !strings.Contains(r.stderr, "Dockerfile:6: unknown instruction") || !strings.Contains(r.stderr, "CMD needs a space") {
		t.Errorf("CMD[...]: %v\n%s", r.err, r.stderr)
	}
	if r := runStrata(t, root, "", "build", "--pull", "-"); r.err == nil {
		t.Errorf("--pull accepted")
	}
}

// A strata build killed with -9 during a RUN step takes the step's
// container with it, within seconds (runc run, killed or not, would leave
// it running until the next build reaped it); the next build cleans up
// the rest (its dead mount, lease and work directory).
func TestBuild_KilledTakesItsRunContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, runc")
	}
	runcRoot := runctest.Root(t)
	t.Setenv(runcRootEnv, runcRoot)
	root := storetest.Root(t)
	loadDemo(t, root)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command(self, "--root", root, "build", "--network", "none", "-")
	build.Env = append(os.Environ(), cliEnv+"=1")
	build.Stdin = strings.NewReader("FROM demo\nRUN sleep 600\n")
	var out syncbuf.Buffer
	build.Stdout, build.Stderr = &out, &out
	if err := build.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- build.Wait() }()
	// Whatever the test's end, the killed build's RUN mount and work
	// directory go (the next build reaps them only if the test gets
	// there); this runs after the kill below.
	t.Cleanup(func() {
		for _, dir := range buildWorkDirs(root) {
			_ = syscall.Unmount(filepath.Join(dir, "root"), syscall.MNT_DETACH)
			os.RemoveAll(dir)
		}
	})
	t.Cleanup(func() {
		build.Process.Kill()
		<-ended
	})
	// The RUN step's container, by the test's own runc root.
	var state specs.State
	for deadline := time.Now().Add(60 * time.Second); state.Status != specs.StateRunning; {
		select {
		case err := <-ended:
			t.Fatalf("the build ended before its RUN step ran: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no RUN container running after 60 s:\n%s", out.String())
		}
		if ids := runctest.List(t, runcRoot); len(ids) == 1 {
			b, err := exec.Command("runc", "--root", runcRoot, "state", ids[0]).Output()
			if err == nil {
				json.Unmarshal(b, &state)
			}
		}
	}
	pidStart, err := layerstore.ProcessStart(state.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := build.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ended
	ended <- nil // for the cleanup
	m := layerstore.MountRecord{PID: state.Pid, PIDStart: pidStart}
	for deadline := time.Now().Add(10 * time.Second); m.Running(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the RUN step's container (pid %d) runs on 10 s after its build was killed", state.Pid)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); len(runctest.List(t, runcRoot)) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("runc still lists the RUN step's container: %q", runctest.List(t, runcRoot))
		}
	}
	// The next build reaps the killed one's mount and lease.
	if r := runStrata(t, root, "FROM demo\nLABEL after=1\n", "build", "-q", "--network", "none", "-t", "after", "-"); r.err != nil {
		t.Fatalf("the next build: %v\n%s", r.err, r.stderr)
	}
	if got := mustRun(t, root, "mounts", "-q"); got != "" {
		t.Errorf("mounts after the next build: %q", got)
	}
	// And its work directory, with the mountpoint in it, is gone.
	for _, dir := range buildWorkDirs(root) {
		t.Errorf("the killed build's work directory is left: %s", dir)
	}
}

// buildWorkDirs returns the RUN steps' work directories whose owner file
// names the store at root.
func buildWorkDirs(root string) []string {
	var dirs []string
	owners, _ := filepath.Glob(filepath.Join(os.TempDir(), "strata-build-*", "owner"))
	for _, f := range owners {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), strconv.Quote(root)) {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	return dirs
}
