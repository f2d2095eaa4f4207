package fs_test

// Steps that touch a mount through a memory mapping run in a child process.
// A page fault on a FUSE file, unlike a system call, keeps its thread in the
// Go runtime's "running" state: a stop-the-world (a GC) in the process that
// serves the mount then waits for the faulting thread, which waits for the
// server, which is stopped. Found by TestSuite_Random in passthrough mode:
// one thread in filemap_fault, the runtime in "GC mark termination".

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// suiteChildEnv carries the operation (JSON) a re-executed test binary runs
// in TestSuite_ChildProcess.
const suiteChildEnv = "STRATA_SUITE_CHILD"

type suiteChildOp struct {
	Op     string // "mmap-write"
	Path   string
	Off    int
	Data   string
	Result string // file the child writes its suiteChildResult to
}

type suiteChildResult struct {
	Obs   string
	Errno int // the error's errno, 0 when it has none
	Err   string
}

// TestSuite_ChildProcess is not a test: it runs one operation when the suite
// re-executes the test binary with suiteChildEnv set.
func TestSuite_ChildProcess(t *testing.T) {
	spec := os.Getenv(suiteChildEnv)
	if spec == "" {
		t.Skip("runs only in a child process of the suite")
	}
	var op suiteChildOp
	if err := json.Unmarshal([]byte(spec), &op); err != nil {
		t.Fatal(err)
	}
	var res suiteChildResult
	var err error
	switch op.Op {
	case "mmap-write":
		res.Obs, err = mmapWrite(op.Path, op.Off, op.Data)
	default:
		t.Fatalf("unknown child op %q", op.Op)
	}
	if err != nil {
		res.Err, res.Errno = err.Error(), int(errnoOf(err))
	}
	b, _ := json.Marshal(res)
	if err := os.WriteFile(op.Result, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// suiteInChild runs op in a child process and returns what it observed and
// its error (with its errno, for comparison).
func suiteInChild(op suiteChildOp) (string, error) {
	dir, err := os.MkdirTemp("", "strata-suite-child-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	op.Result = filepath.Join(dir, "result.json")
	spec, err := json.Marshal(op)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSuite_ChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), suiteChildEnv+"="+string(spec))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("child process for %s %s: %v: %s", op.Op, op.Path, err, out)
	}
	b, err := os.ReadFile(op.Result)
	if err != nil {
		return "", fmt.Errorf("child process for %s %s left no result: %w", op.Op, op.Path, err)
	}
	var res suiteChildResult
	if err := json.Unmarshal(b, &res); err != nil {
		return "", err
	}
	switch {
	case res.Errno != 0:
		return res.Obs, fmt.Errorf("%s: %w", res.Err, unix.Errno(res.Errno))
	case res.Err != "":
		return res.Obs, errors.New(res.Err)
	}
	return res.Obs, nil
}
