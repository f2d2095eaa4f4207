package container

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// warmCap is how much of the container's program (and of its ELF
// interpreter) warmRoot reads ahead: enough for a busybox or a libc,
// little beside a large binary the exec will fault in piecemeal anyway.
const warmCap = 4 << 20

// warmChunk is what one read-ahead call asks for: FUSE's default window.
const warmChunk = 128 << 10

// startWarm runs warmRoot and makeMountpoints in the background while runc
// starts; wait returns once they are done (which must be before the root
// is unmounted: they hold files open on it). Their work is bounded (opens
// that never block, at most elfHeadMax and a path of a file's headers
// read), so the wait needs no cancellation.
func startWarm(rootfs string, spec *specs.Spec) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Best effort, in the process that serves the root: a panic on a
		// crafted file must not take the mount down with it.
		defer func() { _ = recover() }()
		warmRoot(rootfs, spec.Process, spec.Mounts)
		makeMountpoints(rootfs, spec.Mounts)
		warmUserDB(rootfs, spec.Mounts)
	}()
	return func() { <-done }
}

// warmRoot sends, while runc starts, the requests the container's start
// would send a freshly mounted root from runc's own path: a fresh mount's
// kernel caches are empty, so the exec of the program reads it through the
// server (a READ per 128 KiB it faults in, each a hand-off between the
// container's process and a server thread, on runc's critical path). It
// resolves the program as runc does (PATH of the process's environment
// inside the root) and asks the kernel to read ahead it and its ELF
// interpreter (posix_fadvise WILLNEED: the kernel sends the READs at once,
// asynchronously, a window a call, and keeps the pages: lower files are
// opened with FOPEN_KEEP_CACHE). Its lookups leave the kernel's entries
// cached for runc's. Everything is best effort: what fails is left to
// runc, which reports it as it would have. Nothing is written.
func warmRoot(rootfs string, p *specs.Process, mounts []specs.Mount) {
	if p == nil {
		return
	}
	args := p.Args
	for len(args) > 0 {
		prog := lookPathInRoot(rootfs, args[0], p.Cwd, p.Env)
		if prog == "" {
			return
		}
		if !underMount(prog, mounts) {
			if interp := readAhead(rootfs, prog); interp != "" && !underMount(interp, mounts) {
				readAhead(rootfs, interp)
			}
			return
		}
		// A host file bound into the root (--init's /sbin/docker-init) is
		// not in the root's mount, and its exec reads the host's page
		// cache: what is worth warming is the program it runs.
		if len(args) < 3 || args[1] != "--" {
			return
		}
		args = args[2:]
	}
}

// underMount tells whether name (inside the container) falls under the
// destination of one of mounts, which hides what the root has there.
func underMount(name string, mounts []specs.Mount) bool {
	name = path.Clean("/" + name)
	for _, m := range mounts {
		d := path.Clean("/" + m.Destination)
		if name == d || strings.HasPrefix(name, d+"/") || d == "/" {
			return true
		}
	}
	return false
}

// lookPathInRoot returns the path inside rootfs that runc would exec for
// name: name itself when it has a slash (relative to cwd), else the first
// regular file with an execute bit of that name in the PATH of env (as
// Go's LookPath, which runc uses, finds it); "" if none.
func lookPathInRoot(rootfs, name, cwd string, env []string) string {
	if strings.Contains(name, "/") {
		if !path.IsAbs(name) {
			name = path.Join("/", cwd, name)
		}
		return name
	}
	dirs := DefaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			dirs = v
		}
	}
	for _, d := range strings.Split(dirs, ":") {
		if d == "" || !path.IsAbs(d) {
			continue
		}
		p := path.Join(d, name)
		f, err := openInRoot(rootfs, p, unix.O_PATH)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(int(f.Fd()), &st)
		f.Close()
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0 {
			return p
		}
	}
	return ""
}

// warmRootRead, when set (by tests), is told each name readAhead reads.
var warmRootRead func(name string)

// readAhead asks the kernel to read the first warmCap bytes of name (inside
// rootfs) into its page cache, and returns the ELF interpreter it names, if
// any.
func readAhead(rootfs, name string) (interp string) {
	if warmRootRead != nil {
		warmRootRead(name)
	}
	f, err := openInRoot(rootfs, name, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return ""
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return ""
	}
	// The kernel reads ahead at most its readahead window (the mount's
	// max_readahead, 128 KiB) per call: one call a window.
	for off := int64(0); off < min(st.Size, warmCap); off += warmChunk {
		if unix.Fadvise(int(f.Fd()), off, warmChunk, unix.FADV_WILLNEED) != nil {
			break
		}
	}
	return interpreter(f)
}

// elfHeadMax is how much of a program interpreter reads to find its
// program headers: linkers put them right after the ELF header.
const elfHeadMax = 64 << 10

// interpreter returns the PT_INTERP path of the ELF file f, "" if none. It
// reads at most elfHeadMax bytes and the path (not debug/elf, which reads
// the section headers and the section-name table wherever and however
// large a crafted file says they are).
func interpreter(f io.ReaderAt) string {
	buf := make([]byte, elfHeadMax)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return ""
	}
	buf = buf[:n]
	if len(buf) < elf.EI_NIDENT || string(buf[:4]) != elf.ELFMAG {
		return ""
	}
	var order binary.ByteOrder
	switch elf.Data(buf[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		order = binary.BigEndian
	default:
		return ""
	}
	type prog struct{ typ, off, filesz uint64 }
	var phoff, phentsize, phnum, progSize uint64
	var decode func(b []byte) (prog, error)
	switch elf.Class(buf[elf.EI_CLASS]) {
	case elf.ELFCLASS64:
		var h elf.Header64
		if _, err := binary.Decode(buf, order, &h); err != nil {
			return ""
		}
		phoff, phentsize, phnum = h.Phoff, uint64(h.Phentsize), uint64(h.Phnum)
		progSize = uint64(binary.Size(elf.Prog64{}))
		decode = func(b []byte) (prog, error) {
			var p elf.Prog64
			_, err := binary.Decode(b, order, &p)
			return prog{uint64(p.Type), p.Off, p.Filesz}, err
		}
	case elf.ELFCLASS32:
		var h elf.Header32
		if _, err := binary.Decode(buf, order, &h); err != nil {
			return ""
		}
		phoff, phentsize, phnum = uint64(h.Phoff), uint64(h.Phentsize), uint64(h.Phnum)
		progSize = uint64(binary.Size(elf.Prog32{}))
		decode = func(b []byte) (prog, error) {
			var p elf.Prog32
			_, err := binary.Decode(b, order, &p)
			return prog{uint64(p.Type), uint64(p.Off), uint64(p.Filesz)}, err
		}
	default:
		return ""
	}
	// All of them inside what was read (phnum is at most 0xffff, phentsize
	// too: no overflow).
	if phentsize < progSize || phoff > uint64(len(buf)) || phnum*phentsize > uint64(len(buf))-phoff {
		return ""
	}
	for i := range phnum {
		p, err := decode(buf[phoff+i*phentsize:])
		if err != nil {
			return ""
		}
		if elf.ProgType(p.typ) != elf.PT_INTERP || p.filesz == 0 || p.filesz > unix.PathMax || p.off > math.MaxInt64-unix.PathMax {
			continue
		}
		b := make([]byte, p.filesz)
		if _, err := f.ReadAt(b, int64(p.off)); err != nil {
			return ""
		}
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		return string(b)
	}
	return ""
}

// userDB are the files runc reads in the root on its way to the exec,
// whatever the user (its HOME and supplementary groups).
var userDB = []string{"/etc/passwd", "/etc/group"}

// warmUserDB reads runc's userDB into the kernel's cache of the root,
// unless a mount hides them: each read of theirs was a hand-off between
// runc and a server thread on runc's path (runc took 4-14 ms longer with
// them, paired, on 2 cores at load 2.7-8).
func warmUserDB(rootfs string, mounts []specs.Mount) {
	for _, name := range userDB {
		if !underMount(name, mounts) {
			readAhead(rootfs, name)
		}
	}
}

// makeMountpoints makes the mountpoints of mounts that the root lacks, as
// runc would make them (mkdir -p, or an empty file for a bind mount of a
// file, mode 0755 under the process's umask, which runc inherits), so that
// runc finds them there. runc makes what is still missing and takes what
// is there (its MkdirAll and O_CREAT without O_EXCL), so the two may race;
// what is there is left as it is.
// A mount under an earlier one's destination (/dev/pts) is made on that
// mount, not in the root.
func makeMountpoints(rootfs string, mounts []specs.Mount) {
	var dests []string
	for _, m := range mounts {
		dest := path.Clean("/" + m.Destination)
		under := dest == "/"
		for _, d := range dests {
			if dest == d || strings.HasPrefix(dest, d+"/") {
				under = true
			}
		}
		dests = append(dests, dest)
		if under {
			continue
		}
		dir := true
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			st, err := os.Stat(m.Source)
			if err != nil {
				continue
			}
			dir = st.IsDir()
		}
		makeMountpoint(rootfs, dest, dir)
	}
}

// makeMountpoint makes dest (a directory, or an empty file) inside rootfs
// unless it is there.
func makeMountpoint(rootfs, dest string, dir bool) {
	if f, err := openInRoot(rootfs, dest, unix.O_PATH); err == nil {
		f.Close()
		return
	}
	parent, name := path.Split(dest)
	if mkdirAllInRoot(rootfs, parent) != nil {
		return
	}
	pf, err := openInRoot(rootfs, parent, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return
	}
	defer pf.Close()
	if dir {
		_ = unix.Mkdirat(int(pf.Fd()), name, 0o755)
		return
	}
	makeFile(int(pf.Fd()), name)
}

// makeFile makes name in directory dirfd an empty file unless something is
// there. The container's process may already run and put something there
// after makeMountpoint looked: O_EXCL opens nothing that is there (a FIFO
// would block the open, and the root's teardown after it), O_NONBLOCK is
// for the rest.
func makeFile(dirfd int, name string) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o755)
	if err == nil {
		unix.Close(fd)
	}
}
