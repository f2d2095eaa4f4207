package fs

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fchmodFds opens a new file under t's temporary directory as an
// ordinary and as an O_PATH descriptor.
func fchmodFds(t *testing.T) (name string, rd, opath int) {
	t.Helper()
	name = filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	opath, err = unix.Open(name, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(rd); unix.Close(opath) })
	return name, rd, opath
}

func wantMode(t *testing.T, name string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != want {
		t.Fatalf("%s: mode %v, want %v", name, st.Mode().Perm(), want)
	}
}

// Both descriptors, on this kernel's own path (fchmodat2 where it has it),
// and through /proc once fchmodat2 is known missing.
func TestFchmodFd(t *testing.T) {
	t.Cleanup(func() { noFchmodat2.Store(false) })
	for _, missing := range []bool{false, true} {
		noFchmodat2.Store(missing)
		name, rd, opath := fchmodFds(t)
		if err := fchmodFd(rd, 0o600); err != nil {
			t.Fatalf("fchmodat2 missing %v: an ordinary fd: %v", missing, err)
		}
		wantMode(t, name, 0o600)
		if err := fchmodFd(opath, 0o640); err != nil {
			t.Fatalf("fchmodat2 missing %v: an O_PATH fd: %v", missing, err)
		}
		wantMode(t, name, 0o640)
	}
}

// A seccomp filter that answers fchmodat2 with EPERM (as container
// runtimes' default profiles answer system calls they do not know): the
// chmod of an O_PATH descriptor goes through /proc, and fchmodat2 is not
// tried again.
func TestFchmodFd_Fchmodat2Filtered(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("the filter is written for amd64 and arm64's system call numbers")
	}
	t.Cleanup(func() { noFchmodat2.Store(false) })
	noFchmodat2.Store(false)
	name, _, opath := fchmodFds(t)
	errc := make(chan error, 1)
	go func() {
		// The filter stays on this thread, which ends with the goroutine
		// (it is never unlocked).
		runtime.LockOSThread()
		if err := filterFchmodat2(); err != nil {
			errc <- err
			return
		}
		if err := unix.Fchmodat(opath, "", 0o600, unix.AT_EMPTY_PATH); err != unix.EPERM {
			t.Errorf("the filter: fchmodat2 returned %v, want EPERM", err)
		}
		errc <- fchmodFd(opath, 0o600)
	}()
	if err := <-errc; err != nil {
		t.Fatalf("chmod of an O_PATH fd with fchmodat2 filtered: %v", err)
	}
	wantMode(t, name, 0o600)
	if !noFchmodat2.Load() {
		t.Fatal("fchmodat2's EPERM did not mark it missing")
	}
}

// filterFchmodat2 installs on the calling thread a seccomp filter that
// answers fchmodat2 with EPERM.
func filterFchmodat2() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_FCHMODAT2},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0)
}
