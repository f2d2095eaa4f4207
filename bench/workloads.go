package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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
	WDepth      = "depth"
	WImport     = "import"
	WDisk       = "disk"
)

// AllWorkloads lists every workload name in run order.
var AllWorkloads = []string{WStatWalk, WLsLR, WReadSmall, WSeqRead, WRandRead, WAppend, WChmod, WWriteSmall, WDepth, WImport, WDisk}

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
	return []Workload{
		{Name: WStatWalk, Case: "cold", Cold: true, Run: walk, Desc: fmt.Sprintf("lstat every entry of the tree (%d entries), caches dropped", wantWalk)},
		{Name: WStatWalk, Case: "warm", Run: walk, Desc: "the same, caches warm"},
		{Name: WLsLR, Case: "warm", Run: ls, Desc: "ls -lR: readdir, then for every entry lstat and getxattr of security.selinux and system.posix_acl_access, as GNU ls -l does"},
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
	}
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
// security.selinux and system.posix_acl_access. (On a strata mount a warm
// GNU ls -lR sends one FUSE request per entry, GETXATTR security.selinux:
// the kernel caches the rest, POSIX ACLs included. This does the same.)
func lsLR(ctx context.Context, root string, want int) error {
	n := 1
	buf := make([]byte, 256)
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return err
	}
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
			for _, x := range []string{"security.selinux", "system.posix_acl_access"} {
				if _, err := unix.Lgetxattr(p, x, buf); err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
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
