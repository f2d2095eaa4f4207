package build

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/layerstore"
)

// childEnv makes the test binary a build of its own: "store\nrunc-root\ncontext".
const childEnv = "STRATA_BUILD_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		a := strings.Split(v, "\n")
		st, err := layerstore.Open(a[0], nil)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		_, err = Build(context.Background(), st, Options{Context: a[2], Runtime: &container.Runtime{Root: a[1]}, Network: container.NetworkNone, Progress: os.Stdout})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBuild_KilledBuildIsReaped kills a build (SIGKILL) during a RUN: the
// next build of the store kills and deletes its container, reaps its
// mount's lease and removes its work directory, and the store checks clean.
func TestBuild_KilledBuildIsReaped(t *testing.T) {
	st := openStore(t)
	runc := filepath.Join(t.TempDir(), "runc")
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM demo\nRUN echo started; sleep 60\n"})
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+st.Root()+"\n"+runc+"\n"+dir)
	child.Stdout, child.Stderr = out, out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(out.Name())
		if strings.Contains(string(b), "started\n") {
			break
		}
		if time.Now().After(deadline) {
			child.Process.Kill()
			child.Wait()
			t.Fatalf("the child's RUN did not start:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	ms, _ := st.Mounts()
	if len(ms) != 1 {
		t.Fatalf("%d leases after the kill, want the RUN's", len(ms))
	}
	work := filepath.Dir(ms[0].Dir)

	// The next build cleans up.
	next := writeContext(t, map[string]string{"Dockerfile": "FROM demo\nRUN true\n"})
	build(t, st, Options{Context: next, Runtime: &container.Runtime{Root: runc}})
	if ms, _ := st.Mounts(); len(ms) != 0 {
		t.Errorf("leases left: %v", ms)
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", work, err)
	}
	if b, err := exec.Command("runc", "--root", runc, "list", "-q").CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "" {
		t.Errorf("runc still lists %q (%v)", b, err)
	}
}
