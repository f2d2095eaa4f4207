package testsuite

// Steps that touch a mount through a memory mapping run in a child process.
// A page fault on a FUSE file, unlike a system call, keeps its thread in the
// Go runtime's "running" state: a stop-the-world (a GC) in the process that
// serves the mount then waits for the faulting thread, which waits for the
// server, which is stopped. Found by the random sequence in passthrough mode:
// one thread in filemap_fault, the runtime in "GC mark termination".

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// suiteChildEnv carries the operation (JSON) that a test binary importing
// this package, re-executed by suiteInChild, runs instead of its tests.
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

// init makes the test binary the child when suiteChildEnv is set: it runs
// the one operation and exits before any test (or the caller's TestMain)
// starts. Nothing is registered; a binary without the variable is untouched.
func init() {
	if spec := os.Getenv(suiteChildEnv); spec != "" {
		os.Exit(suiteChild(spec))
	}
}

func suiteChild(spec string) int {
	var op suiteChildOp
	if err := json.Unmarshal([]byte(spec), &op); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var res suiteChildResult
	var err error
	switch op.Op {
	case "mmap-write":
		res.Obs, err = mmapWrite(op.Path, op.Off, op.Data)
	default:
		fmt.Fprintf(os.Stderr, "unknown child op %q\n", op.Op)
		return 2
	}
	if err != nil {
		res.Err, res.Errno = err.Error(), int(errnoOf(err))
	}
	b, _ := json.Marshal(res)
	if err := os.WriteFile(op.Result, b, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
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
	cmd := exec.Command(os.Args[0], "-test.run=^$")
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
