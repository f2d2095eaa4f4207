// Package runctest gives tests runc state directories (runc --root) of
// their own, so that what a test leaves in runc is found by its root, never
// by a machine-wide name (other test runs use runc at the same time), and
// a test process killed midway leaves containers the next one removes.
//
// Layout: $TMPDIR/strata-runc-tests/<pid>-<start>/ is the directory of one
// test process (its pid and the process's start time, so a reused pid is not
// taken for it), holding a root per test (NN) and one for the process
// (Process). The first Root or Process of a test process deletes, with
// their containers (runc delete --force), the directories of processes that
// are gone; Finish removes the process's own at its end. A test's root is checked when the test ends: a container left
// there fails the test and is deleted.
package runctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/strata-dev/strata/layerstore"
)

var (
	once    sync.Once
	procDir string
	procErr error
	seq     atomic.Int64
)

func base() string { return filepath.Join(os.TempDir(), "strata-runc-tests") }

// dir returns this process's directory, made (and the dead processes'
// removed) at its first use.
func dir() (string, error) {
	once.Do(func() {
		start, err := layerstore.ProcessStart(os.Getpid())
		if err != nil {
			procErr = err
			return
		}
		ReapStranded()
		procDir = filepath.Join(base(), fmt.Sprintf("%d-%d", os.Getpid(), start))
		procErr = os.MkdirAll(procDir, 0o700)
	})
	return procDir, procErr
}

// Root returns a new runc state directory for t. When t ends, a container
// left in it fails t and is deleted, and the directory is removed.
func Root(t testing.TB) string {
	t.Helper()
	d, err := dir()
	if err != nil {
		t.Fatalf("runc root: %v", err)
	}
	root := filepath.Join(d, strconv.FormatInt(seq.Add(1), 10))
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, id := range List(t, root) {
			t.Errorf("runc --root %s: container %s was left running", root, id)
			deleteForce(root, id)
		}
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("runc root: %v", err)
		}
	})
	return root
}

// Process returns the runc state directory of this test process, for what
// no single test owns (a TestMain's default).
func Process() (string, error) {
	d, err := dir()
	if err != nil {
		return "", err
	}
	root := filepath.Join(d, "process")
	return root, os.MkdirAll(root, 0o700)
}

// Finish removes this process's directory, unless a container is left in
// it (which the next test process then deletes): a TestMain's last step.
func Finish() {
	if procDir == "" {
		return
	}
	roots, _ := os.ReadDir(procDir)
	for _, r := range roots {
		out, err := exec.Command("runc", "--root", filepath.Join(procDir, r.Name()), "list", "-q").Output()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			return
		}
	}
	os.RemoveAll(procDir)
}

// List returns the IDs of the containers runc has under root.
func List(t testing.TB, root string) []string {
	t.Helper()
	out, err := exec.Command("runc", "--root", root, "list", "-q").CombinedOutput()
	if err != nil {
		t.Errorf("runc --root %s list: %v: %s", root, err, out)
		return nil
	}
	return strings.Fields(string(out))
}

func deleteForce(root, id string) {
	_ = exec.Command("runc", "--root", root, "delete", "--force", id).Run()
}

// ReapStranded deletes the containers and directories that test processes
// now gone left (killed before their cleanup ran), and returns how many
// containers it deleted. A live process's are left alone.
func ReapStranded() int {
	ents, err := os.ReadDir(base())
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, start, ok := strings.Cut(e.Name(), "-")
		p, perr := strconv.Atoi(pid)
		s, serr := strconv.ParseUint(start, 10, 64)
		if !ok || perr != nil || serr != nil {
			continue
		}
		if st, err := layerstore.ProcessStart(p); err == nil && st == s {
			continue // it runs
		}
		d := filepath.Join(base(), e.Name())
		roots, _ := os.ReadDir(d)
		for _, r := range roots {
			root := filepath.Join(d, r.Name())
			out, _ := exec.Command("runc", "--root", root, "list", "-q").Output()
			for _, id := range strings.Fields(string(out)) {
				deleteForce(root, id)
				n++
			}
		}
		os.RemoveAll(d)
	}
	return n
}
