package container

import (
	"archive/tar"
	"context"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/session"
)

func TestWarm_LookPathInRoot(t *testing.T) {
	root := filepath.Join(fixtures.Dir(t), "rootfs")
	for _, c := range []struct {
		name, cwd string
		env       []string
		want      string
	}{
		{"true", "/", []string{"PATH=/usr/bin:/bin"}, "/bin/true"},
		{"true", "/", nil, "/bin/true"}, // runc's default PATH
		{"true", "/", []string{"PATH=/usr/bin"}, ""},
		{"/bin/sh", "/", nil, "/bin/sh"},
		{"bin/true", "/", nil, "/bin/true"}, // relative to the working directory
		{"../bin/true", "/app", nil, "/bin/true"},
		{"nosuch", "/", []string{"PATH=/bin:relative:"}, ""},
		{"bin", "/", []string{"PATH=/"}, ""},            // a directory is no program
		{"passwd", "/", []string{"PATH=/etc:/bin"}, ""}, // no execute bit: runc's LookPath skips it
	} {
		if got := lookPathInRoot(root, c.name, c.cwd, c.env); got != c.want {
			t.Errorf("lookPathInRoot(%q, cwd %q, %q) = %q, want %q", c.name, c.cwd, c.env, got, c.want)
		}
	}
}

// debianTrue returns the Debian fixture's /usr/bin/true: a dynamically
// linked program whose interpreter is /lib64/ld-linux-x86-64.so.2.
func debianTrue(t *testing.T) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtures.Debian(t), "rootfs.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("the Debian fixture's usr/bin/true: %v", err)
		}
		if path.Clean("/"+h.Name) == "/usr/bin/true" {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

const debianInterp = "/lib64/ld-linux-x86-64.so.2"

// A PATH entry that is a symlink out of the root resolves inside it: the
// host's programs are never found (nor read).
func TestWarm_LookPathInRootStaysInside(t *testing.T) {
	root := t.TempDir()
	host := t.TempDir()
	prog := debianTrue(t)
	if err := os.WriteFile(filepath.Join(host, "prog"), prog, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	if got := lookPathInRoot(root, "prog", "/", []string{"PATH=/evil"}); got != "" {
		t.Fatalf("found %q through a symlink out of the root", got)
	}
	if got := readAhead(root, "/evil/prog"); got != "" {
		t.Fatalf("readAhead through a symlink out of the root: %q", got)
	}
	// The same program inside the root is found and read.
	if err := os.WriteFile(filepath.Join(root, "prog"), prog, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := readAhead(root, "/prog"); got != debianInterp {
		t.Fatalf("readAhead of the program inside the root: %q, want %q", got, debianInterp)
	}
}

func TestWarm_ReadAheadInterpreter(t *testing.T) {
	root := filepath.Join(fixtures.Dir(t), "rootfs")
	if got := readAhead(root, "/bin/busybox"); got != "" {
		t.Errorf("static busybox: interpreter %q, want none", got)
	}
	if got := readAhead(root, "/etc/passwd"); got != "" {
		t.Errorf("a text file: interpreter %q, want none", got)
	}
	if got := readAhead(root, "/nosuch"); got != "" {
		t.Errorf("a missing file: interpreter %q, want none", got)
	}
	// A dynamically linked program: Debian's coreutils.
	droot := t.TempDir()
	prog := debianTrue(t)
	if err := os.WriteFile(filepath.Join(droot, "true"), prog, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := readAhead(droot, "/true"); got != debianInterp {
		t.Fatalf("Debian's true: interpreter %q, want %q", got, debianInterp)
	}
	// Cut inside its program headers: nothing, and no panic.
	if err := os.WriteFile(filepath.Join(droot, "cut"), prog[:100], 0o755); err != nil {
		t.Fatal(err)
	}
	if got := readAhead(droot, "/cut"); got != "" {
		t.Fatalf("a cut ELF: interpreter %q", got)
	}
}

// startWarm really warms: on a fresh mount of the demo image, the
// program's pages, and those of /etc/passwd and /etc/group (which runc
// reads), are in the kernel's cache of the mount once it is done.
func TestWarm_StartWarmCachesTheProgram(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	st := storetest.Open(t)
	storetest.Load(t, st, filepath.Join(fixtures.Dir(t), "oci"))
	dir := t.TempDir()
	s, err := session.Start(context.Background(), st, "demo", dir, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close the session on %s: %v", dir, err)
		}
		storetest.Check(t, st)
	})
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"busybox", "true"}, Cwd: "/", Env: []string{"PATH=/bin"}}}
	for _, name := range []string{"bin/busybox", "etc/passwd", "etc/group"} {
		if n, total := cached(t, filepath.Join(dir, name)); n != 0 {
			t.Fatalf("a fresh mount: %d of %s's %d pages cached already", n, name, total)
		}
	}
	startWarm(dir, spec)()
	for _, name := range []string{"etc/passwd", "etc/group"} {
		if n, total := cached(t, filepath.Join(dir, name)); n != total {
			t.Errorf("after startWarm: %d of %s's %d pages cached", n, name, total)
		}
	}
	// The kernel sends the reads asynchronously: wait for them (a hang
	// is the failure, not a slow machine).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, total := cached(t, filepath.Join(dir, "bin/busybox"))
		if n == min(total, warmCap/os.Getpagesize()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after startWarm: %d of busybox's %d pages cached", n, total)
		}
	}
}

// cached returns how many of name's pages are in the page cache, and how
// many it has.
func cached(t *testing.T, name string) (n, total int) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	for _, v := range vec {
		n += int(v & 1)
	}
	return n, len(vec)
}

// With --init the process is /sbin/docker-init, a host file bound over the
// root's: what is warmed is the program it runs, not the root's file under
// the bind.
func TestWarm_InitWarmsTheProgram(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	prog := debianTrue(t)
	for _, name := range []string{"sbin/docker-init", "prog"} {
		if err := os.WriteFile(filepath.Join(root, name), prog, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if !underMount("/sbin/docker-init", []specs.Mount{{Destination: "/sbin/docker-init"}}) || underMount("/sbin/x", []specs.Mount{{Destination: "/sbin/docker-init"}}) ||
		!underMount("/dev/x", []specs.Mount{{Destination: "/dev/"}}) {
		t.Fatal("underMount")
	}
	// What warmRoot reads shows in the files' access times: strictatime
	// only on a mount of our own, so watch the opens instead (readAhead
	// returns the interpreter of what it read).
	mounts := []specs.Mount{{Destination: "/sbin/docker-init", Type: "bind", Source: "/nosuch", Options: []string{"bind", "ro"}}}
	var read []string
	warmRootRead = func(name string) { read = append(read, name) }
	t.Cleanup(func() { warmRootRead = nil })
	warmRoot(root, &specs.Process{Args: []string{"/sbin/docker-init", "--", "/prog", "x"}, Cwd: "/"}, mounts)
	if !slices.Equal(read, []string{"/prog", debianInterp}) {
		t.Fatalf("with --init: read %q, want /prog and its interpreter", read)
	}
	read = nil
	warmRoot(root, &specs.Process{Args: []string{"/sbin/docker-init", "/prog"}, Cwd: "/"}, mounts)
	if len(read) != 0 {
		t.Fatalf("a bound program without --: read %q", read)
	}
}

func TestWarm_MakeMountpoints(t *testing.T) {
	root := t.TempDir()
	host := t.TempDir()
	file := filepath.Join(host, "hosts")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	makeMountpoints(root, []specs.Mount{
		{Destination: "/proc", Type: "proc"},
		{Destination: "/dev", Type: "tmpfs"},
		{Destination: "/dev/pts", Type: "devpts"}, // on /dev's tmpfs, not in the root
		{Destination: "/etc/hosts", Type: "bind", Source: file, Options: []string{"rbind"}},
		{Destination: "/data/vol", Type: "bind", Source: host},
		// Through a symlink out of the root (to a path the root lacks): left
		// to runc, and never made on the host.
		{Destination: "/out/x", Type: "bind", Source: host},
		{Destination: "/gone", Type: "bind", Source: filepath.Join(host, "nosuch")},
	})
	for name, want := range map[string]os.FileMode{
		"proc": os.ModeDir, "dev": os.ModeDir, "etc/hosts": 0, "data": os.ModeDir, "data/vol": os.ModeDir,
		"etc": os.ModeDir,
	} {
		st, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode().Type() != want {
			t.Errorf("%s: type %v, want %v", name, st.Mode().Type(), want)
		}
	}
	if st, _ := os.Stat(filepath.Join(root, "etc")); st.Mode().Perm() != 0o700 {
		t.Errorf("etc was there: its mode changed to %v", st.Mode().Perm())
	}
	for _, name := range []string{"dev/pts", "gone"} {
		if _, err := os.Lstat(filepath.Join(root, name)); !os.IsNotExist(err) {
			t.Errorf("%s made: %v", name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(host, "x")); !os.IsNotExist(err) {
		t.Errorf("made on the host through a symlink: %v", err)
	}
}

// A "program" whose section-name table is huge (elf.NewFile reads it whole)
// is read ahead without reading more than its headers: the goroutine runs in
// the process that serves the container's root, and teardown waits for it.
func TestWarm_ReadAheadCraftedELF(t *testing.T) {
	root := t.TempDir()
	const size = 256 << 20
	var h [64 + 2*64]byte
	copy(h[:], "\x7fELF\x02\x01\x01")
	le := binary.LittleEndian
	le.PutUint16(h[16:], uint16(elf.ET_EXEC))
	le.PutUint16(h[18:], uint16(elf.EM_X86_64))
	le.PutUint32(h[20:], 1)
	le.PutUint64(h[40:], 64) // e_shoff
	le.PutUint16(h[52:], 64) // e_ehsize
	le.PutUint16(h[58:], 64) // e_shentsize
	le.PutUint16(h[60:], 2)  // e_shnum
	le.PutUint16(h[62:], 1)  // e_shstrndx
	sh := h[64+64:]
	le.PutUint32(sh[4:], uint32(elf.SHT_STRTAB))
	le.PutUint64(sh[24:], 4096)      // sh_offset
	le.PutUint64(sh[32:], size-4096) // sh_size
	f, err := os.Create(filepath.Join(root, "prog"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(h[:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := readAhead(root, "/prog")
	runtime.ReadMemStats(&after)
	if got != "" {
		t.Errorf("interpreter %q, want none", got)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("readAhead of a %d MiB crafted ELF allocated %d bytes", size>>20, n)
	}
}

// What the container's process puts where a mountpoint is to be made (after
// makeMountpoint looked) is left there: a FIFO is not opened (which would
// block until a writer came, and the root's teardown behind it).
func TestWarm_MakeFileLeavesFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(dir, "hosts"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		makeFile(int(d.Fd()), "hosts")
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		// Unblock the open so the test ends.
		if w, err := os.OpenFile(filepath.Join(dir, "hosts"), os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		t.Fatal("makeFile blocked on a FIFO")
	}
	st, err := os.Lstat(filepath.Join(dir, "hosts"))
	if err != nil || st.Mode().Type() != os.ModeNamedPipe {
		t.Fatalf("the FIFO: %v, %v", st, err)
	}
	makeFile(int(d.Fd()), "new")
	if st, err := os.Lstat(filepath.Join(dir, "new")); err != nil || !st.Mode().IsRegular() || st.Size() != 0 {
		t.Fatalf("new: %v, %v", st, err)
	}
}

// A FIFO as the program is neither opened for long nor read.
func TestWarm_ReadAheadFIFO(t *testing.T) {
	root := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(root, "prog"), 0o755); err != nil {
		t.Fatal(err)
	}
	done := make(chan string)
	go func() { done <- readAhead(root, "/prog") }()
	select {
	case got := <-done:
		if got != "" {
			t.Fatalf("a FIFO: interpreter %q", got)
		}
	case <-time.After(30 * time.Second):
		if w, err := os.OpenFile(filepath.Join(root, "prog"), os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		t.Fatal("readAhead blocked on a FIFO")
	}
	if got := lookPathInRoot(root, "prog", "/", []string{"PATH=/"}); got != "" {
		t.Fatalf("a FIFO found as the program: %q", got)
	}
}
