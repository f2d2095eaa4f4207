package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Workload is one measured operation against a contender's root.
type Workload struct {
	Name string // e.g. "stat-walk"
	Case string // e.g. "cold", "warm"
	Desc string
	// Cold drops the page, dentry and inode caches before each repetition;
	// otherwise one untimed run warms the caches first.
	Cold bool
	// Fresh remounts with an empty upper and syncs before each repetition
	// (the workload writes).
	Fresh bool
	// Run does the work once and returns how long it took.
	Run func(ctx context.Context, root string) (time.Duration, error)
}

// Key names the cell row: "stat-walk/cold".
func (w Workload) Key() string { return w.Name + "/" + w.Case }

// writeDir is where the write-heavy workload creates its files.
const writeDir = "wr-bench"

// Workload names, as --only takes them.
const (
	WStatWalk   = "stat-walk"
	WLsLR       = "ls-lR"
	WReadSmall  = "read-small"
	WSeqRead    = "seq-read"
	WRandRead   = "rand-read"
	WAppend     = "append"
	WChmod      = "chmod"
	WWriteSmall = "write-small"
	WFind       = "find"
	WLsGNU      = "gnu-ls-lR"
	WTar        = "tar"
	WCp         = "cp-a"
	WDD         = "dd"
	WReadBack   = "read-back"
	WApt        = "apt-get"
	WCreate     = "create-1k"
	WDepth      = "depth"
	WImport     = "import"
	WDisk       = "disk"
)

// AllWorkloads lists every workload name in run order.
var AllWorkloads = []string{WStatWalk, WFind, WLsLR, WLsGNU, WReadSmall, WTar, WSeqRead, WRandRead, WAppend, WChmod,
	WWriteSmall, WCreate, WCp, WDD, WReadBack, WApt, WDepth, WImport, WDisk}

// mainWorkloads is the table of workloads run against the main image.
func mainWorkloads(ds *Dataset, randOps int) []Workload {
	wantWalk := ds.Entries + 1 // and the root
	walk := func(ctx context.Context, root string) (time.Duration, error) {
		return timed(func() error { return statWalk(ctx, root, wantWalk) })
	}
	ls := func(ctx context.Context, root string) (time.Duration, error) {
		return timed(func() error { return lsLR(ctx, root, wantWalk) })
	}
	small := func(ctx context.Context, root string) (time.Duration, error) {
		return timed(func() error { return readFiles(ctx, root, ds.SmallFiles) })
	}
	seq := func(ctx context.Context, root string) (time.Duration, error) {
		return timed(func() error { return seqRead(filepath.Join(root, ds.BigFile), ds.Spec.BigSize) })
	}
	files := writeSet(ds.Spec)
	find := func(ctx context.Context, root string) (time.Duration, error) {
		return findPrint(ctx, root, wantWalk)
	}
	ddMiB := max(ds.Spec.BigSize>>20/10, 8) // 100 MiB in a full run
	cpDir := cpSource(ds)
	return []Workload{
		{Name: WStatWalk, Case: "cold", Cold: true, Run: walk, Desc: fmt.Sprintf("lstat every entry of the tree (%d entries), caches dropped", wantWalk)},
		{Name: WStatWalk, Case: "warm", Run: walk, Desc: "the same, caches warm"},
		{Name: WFind, Case: "cold", Cold: true, Run: find, Desc: "find . -printf '%s\\n' (the real tool, in a child process), caches dropped"},
		{Name: WFind, Case: "warm", Run: find, Desc: "the same, caches warm"},
		{Name: WLsLR, Case: "warm", Run: ls, Desc: "ls -lR: readdir, then for every entry lstat and getxattr of security.selinux and system.posix_acl_access, each given up once the file system says EOPNOTSUPP, as GNU ls -l does"},
		{Name: WLsGNU, Case: "warm", Desc: "GNU ls -lR . > /dev/null (the real tool: its getxattr follows symlinks, the Go imitation's lgetxattr does not)",
			Run: func(ctx context.Context, root string) (time.Duration, error) {
				return runTool(ctx, root, nil, "ls", "-lR", ".")
			}},
		{Name: WTar, Case: "warm", Desc: fmt.Sprintf("tar -cf - --exclude=./%s . | cat > /dev/null: every file but the big one, by GNU tar", path.Dir(ds.BigFile)),
			Run: func(ctx context.Context, root string) (time.Duration, error) {
				return runTool(ctx, root, nil, "sh", "-c", fmt.Sprintf("tar -cf - --exclude=./%s . | cat > /dev/null", path.Dir(ds.BigFile)))
			}},
		{Name: WReadSmall, Case: "cold", Cold: true, Run: small, Desc: fmt.Sprintf("open, read and close every small file (%d files)", len(ds.SmallFiles))},
		{Name: WReadSmall, Case: "warm", Run: small},
		{Name: WSeqRead, Case: "cold", Cold: true, Run: seq, Desc: fmt.Sprintf("read the %s file sequentially, 1 MiB at a time", fmtBytes(float64(ds.Spec.BigSize)))},
		{Name: WSeqRead, Case: "warm", Run: seq},
		{Name: WRandRead, Case: "warm", Desc: fmt.Sprintf("%d random 4 KiB reads in the big file (%s)", randOps, randReader()),
			Run: func(ctx context.Context, root string) (time.Duration, error) {
				return randRead(ctx, filepath.Join(root, ds.BigFile), ds.Spec.BigSize, randOps, ds.Spec.Seed)
			}},
		{Name: WAppend, Case: "1 byte", Fresh: true, Desc: "append 1 byte to the big lower file (copy-up), fresh mount each time",
			Run: func(ctx context.Context, root string) (time.Duration, error) {
				return timed(func() error { return appendByte(filepath.Join(root, ds.BigFile)) })
			}},
		{Name: WChmod, Case: "0600", Fresh: true, Desc: "chmod the big lower file, fresh mount each time",
			Run: func(ctx context.Context, root string) (time.Duration, error) {
				return timed(func() error { return os.Chmod(filepath.Join(root, ds.BigFile), 0o600) })
			}},
		{Name: WWriteSmall, Case: "create", Fresh: true, Desc: fmt.Sprintf("create and write %d small files in %d directories, like a build step unpacking a tarball", len(files.files), files.dirs),
			Run: func(ctx context.Context, root string) (time.Duration, error) {
				return timed(func() error { return writeFiles(ctx, filepath.Join(root, writeDir), files) })
			}},
		{Name: WCreate, Case: "1 KiB", Fresh: true, Desc: "create 1,000 new 1 KiB files in one new directory of the top layer, fresh mount each time",
			Run: func(ctx context.Context, root string) (time.Duration, error) {
				return create1k(filepath.Join(root, "wr-create"))
			}},
		{Name: WCp, Case: cpDir, Fresh: true, Desc: fmt.Sprintf("cp -a %s wr-cp (GNU cp: lower reads, top-layer creates), fresh mount each time", cpDir),
			Run: func(ctx context.Context, root string) (time.Duration, error) {
				return runTool(ctx, root, nil, "cp", "-a", cpDir, "wr-cp")
			}},
		{Name: WDD, Case: "bs=4k", Fresh: true, Desc: fmt.Sprintf("dd if=/dev/zero bs=4k of a new %d MiB top-layer file (no fsync), fresh mount each time", ddMiB),
			Run: func(ctx context.Context, root string) (time.Duration, error) {
				if err := os.Mkdir(filepath.Join(root, "wr-dd"), 0o755); err != nil {
					return 0, err
				}
				return runTool(ctx, root, nil, "dd", "if=/dev/zero", "of=wr-dd/out", "bs=4k", fmt.Sprintf("count=%d", ddMiB*256), "status=none")
			}},
		{Name: WReadBack, Case: "warm", Fresh: true, Desc: fmt.Sprintf("dd bs=1M of a %d MiB file written to the top layer before (written, synced and read once untimed)", ddMiB),
			Run: func(ctx context.Context, root string) (time.Duration, error) { return readBack(ctx, root, ddMiB) }},
	}
}

// cpSource is the directory of the main image cp-a copies.
func cpSource(ds *Dataset) string {
	for _, d := range []string{"usr/share/doc", "usr/share/man/man1", "t00/d0000"} {
		if st, err := os.Stat(filepath.Join(ds.Main.Merged, d)); err == nil && st.IsDir() {
			return d
		}
	}
	ents, _ := os.ReadDir(ds.Main.Merged)
	for _, e := range ents {
		if e.IsDir() && e.Name() != path.Dir(ds.BigFile) {
			return e.Name()
		}
	}
	return "."
}

// runTool runs a real tool in root and times it; stdout goes to out (nil:
// discarded).
func runTool(ctx context.Context, root string, out io.Writer, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root
	cmd.Stdout = out
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLine([]byte(stderr.String())))
	}
	return d, nil
}

// findPrint runs find -printf '%s\n' and checks it saw want entries.
func findPrint(ctx context.Context, root string, want int) (time.Duration, error) {
	var lines lineCounter
	d, err := runTool(ctx, root, &lines, "find", ".", "-printf", "%s\n")
	if err != nil {
		return 0, err
	}
	if lines.n != want {
		return 0, fmt.Errorf("find saw %d entries, want %d", lines.n, want)
	}
	return d, nil
}

type lineCounter struct{ n int }

func (l *lineCounter) Write(p []byte) (int, error) {
	l.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// create1k creates 1,000 files of 1 KiB in a new directory dir.
func create1k(dir string) (time.Duration, error) {
	data := bytes.Repeat([]byte("strata-b"), 128)
	return timed(func() error {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		for i := range 1000 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), data, 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

// readBack writes a file of mib MiB to the top layer, syncs, reads it once
// and then times dd reading it again.
func readBack(ctx context.Context, root string, mib int64) (time.Duration, error) {
	dir := filepath.Join(root, "wr-rb")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}
	f, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for range mib {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return 0, err
	}
	if _, err := runTool(ctx, root, nil, "dd", "if=wr-rb/file", "of=/dev/null", "bs=1M", "status=none"); err != nil {
		return 0, err
	}
	return runTool(ctx, root, nil, "dd", "if=wr-rb/file", "of=/dev/null", "bs=1M", "status=none")
}

func timed(fn func() error) (time.Duration, error) {
	t0 := time.Now()
	err := fn()
	return time.Since(t0), err
}

// statWalk lstats every entry under root and checks that it saw want.
func statWalk(ctx context.Context, root string, want int) error {
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("walk saw %d entries, want %d", n, want)
	}
	return nil
}

// lsLR does what `ls -lR` does to the file system: for every directory a
// readdir, and for every entry an lstat and the getxattrs of
// security.selinux and system.posix_acl_access, each given up for the rest
// of the walk once the file system says it does not support it (GNU ls's
// getfilecon_cache and file_has_acl_cache remember such a device). On a
// strata mount the kernel answers the ACLs from its cache (FUSE_POSIX_ACL),
// and a mount without SELinux labels answers EOPNOTSUPP to the first.
func lsLR(ctx context.Context, root string, want int) error {
	n := 1
	buf := make([]byte, 256)
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return err
	}
	names := []string{"security.selinux", "system.posix_acl_access"}
	unsupported := make([]bool, len(names))
	var walk func(dir string) error
	walk = func(dir string) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		var sub []string
		for _, e := range ents {
			p := dir + "/" + e.Name()
			if err := unix.Lstat(p, &st); err != nil {
				return &fs.PathError{Op: "lstat", Path: p, Err: err}
			}
			for i, x := range names {
				if unsupported[i] {
					continue
				}
				_, err := unix.Lgetxattr(p, x, buf)
				switch {
				case err == nil, errors.Is(err, unix.ENODATA):
				case errors.Is(err, unix.EOPNOTSUPP):
					unsupported[i] = true
				default:
					return &fs.PathError{Op: "getxattr " + x, Path: p, Err: err}
				}
			}
			n++
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				sub = append(sub, p)
			}
		}
		for _, d := range sub {
			if err := walk(d); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("ls -lR saw %d entries, want %d", n, want)
	}
	return nil
}

func readFiles(ctx context.Context, root string, files []string) error {
	buf := make([]byte, 64<<10)
	for i, p := range files {
		if i%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		f, err := os.Open(filepath.Join(root, p))
		if err != nil {
			return err
		}
		_, err = drain(f, buf)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func seqRead(p string, want int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := drain(f, make([]byte, 1<<20))
	if err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("%s: read %d bytes, want %d", p, n, want)
	}
	return nil
}

func randReader() string {
	if _, err := exec.LookPath("fio"); err == nil {
		return "fio, psync"
	}
	return "the harness's pread loop; fio is not installed"
}

// randRead does ops random 4 KiB preads in p, with fio when it is installed
// (the time is fio's: its mean latency times its I/O count), else with a
// pread loop.
func randRead(ctx context.Context, p string, size int64, ops int, seed int64) (time.Duration, error) {
	if _, err := exec.LookPath("fio"); err == nil {
		return fioRandRead(ctx, p, size, ops, seed)
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rnd := rand.New(rand.NewPCG(bigOffsetSeed(seed), 0))
	blocks := size / 4096
	offs := make([]int64, ops)
	for i := range offs {
		offs[i] = rnd.Int64N(blocks) * 4096
	}
	buf := make([]byte, 4096)
	return timed(func() error {
		for _, off := range offs {
			if _, err := f.ReadAt(buf, off); err != nil {
				return err
			}
		}
		return nil
	})
}

func fioRandRead(ctx context.Context, p string, size int64, ops int, seed int64) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "fio", "--name=randread", "--filename="+p, "--readonly", "--rw=randread", "--bs=4k",
		fmt.Sprintf("--size=%d", size), fmt.Sprintf("--io_size=%d", int64(ops)*4096), "--ioengine=psync",
		"--invalidate=0", "--norandommap", "--randrepeat=1", fmt.Sprintf("--randseed=%d", seed), "--output-format=json")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return 0, fmt.Errorf("fio: %w: %s", err, lastLine(ee.Stderr))
		}
		return 0, fmt.Errorf("fio: %w", err)
	}
	var r struct {
		Jobs []struct {
			Error int `json:"error"`
			Read  struct {
				TotalIOs int64 `json:"total_ios"`
				LatNs    struct {
					Mean float64 `json:"mean"`
				} `json:"lat_ns"`
			} `json:"read"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(jsonPart(out), &r); err != nil {
		return 0, fmt.Errorf("fio output: %w", err)
	}
	if len(r.Jobs) != 1 || r.Jobs[0].Error != 0 || r.Jobs[0].Read.TotalIOs != int64(ops) {
		return 0, fmt.Errorf("fio: unexpected result %s", lastLine(out))
	}
	return time.Duration(r.Jobs[0].Read.LatNs.Mean * float64(r.Jobs[0].Read.TotalIOs)), nil
}

// jsonPart skips anything fio prints before its JSON.
func jsonPart(b []byte) []byte {
	for i, c := range b {
		if c == '{' {
			return b[i:]
		}
	}
	return b
}

// drain reads r to EOF in reads of len(buf) (io.Copy to io.Discard would
// read 8 KiB at a time).
func drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func appendByte(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte{'\n'})
	return errors.Join(err, f.Close())
}

// fileSet is what the write-heavy workload writes.
type fileSet struct {
	dirs  int
	files []wfile
}

type wfile struct {
	path string
	data []byte
}

func writeSet(s Spec) fileSet {
	c := newContent(s.Seed + 3000)
	fs := fileSet{dirs: max(1, s.WriteFiles/50)}
	for i := 0; i < s.WriteFiles; i++ {
		p := fmt.Sprintf("w%03d/o%05d.o", i%fs.dirs, i)
		fs.files = append(fs.files, wfile{p, c.bytes(p, c.size())})
	}
	return fs
}

func writeFiles(ctx context.Context, dir string, set fileSet) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for i := 0; i < set.dirs; i++ {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("w%03d", i)), 0o755); err != nil {
			return err
		}
	}
	for i, f := range set.files {
		if i%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := os.WriteFile(filepath.Join(dir, f.path), f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
