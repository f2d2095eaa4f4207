package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/strata-dev/strata/layerstore"
)

// MountsConfig configures RunMounts: many read-write mounts of one image at
// once, strata beside fuse-overlayfs on the same layers.
type MountsConfig struct {
	// Dir is the work directory (a store, the layers unpacked for
	// fuse-overlayfs, the mountpoints). Default /var/tmp/strata-bench.
	Dir string
	// Image is an OCI layout, oci-archive or docker-archive holding one
	// image: what every mount shows.
	Image string
	// Counts are the numbers of mounts to measure, in order. Default 1, 10,
	// 100.
	Counts []int
	// Strata runs the strata CLI (its binary); mounts are made as users
	// make them, with "strata mount -d".
	Strata string
	// Parallel is how many mounts (and unmounts) are made at once, as a
	// node starting many containers makes them. Default 1: one after the
	// other.
	Parallel int
	// Settle is how long the mounts rest before memory is read (before
	// the walks and after them), the same for both. Default 5s.
	Settle time.Duration
	// Log receives progress lines. Default: discard.
	Log io.Writer
}

// MountsRow is one count of one contender.
type MountsRow struct {
	Contender string        `json:"contender"`
	Mounts    int           `json:"mounts"`
	Parallel  int           `json:"parallel"` // mounts and unmounts made at once
	Up        time.Duration `json:"up"`       // to mount them all
	Down      time.Duration `json:"down"`     // to unmount them all
	// Memory of the servers after a find and an ls -lR in every mount and
	// Settle at rest, summed: anonymous (private) resident memory, resident
	// memory, and proportional set size (shared pages divided among the
	// processes that map them).
	Anon int64 `json:"anon"`
	RSS  int64 `json:"rss"`
	PSS  int64 `json:"pss"`
	// Anonymous resident memory of the servers, summed, after Settle at
	// rest before the walks (mounted, one file written in each): what a
	// server costs before it has looked anything up. Anon - AnonIdle over
	// the entries walked is the cost of a looked-up entry.
	AnonIdle int64 `json:"anon_idle"`
	// The servers' executables, each once (/proc/PID/exe): for strata,
	// strata-mount where it is installed beside strata, else strata.
	Servers []string `json:"servers,omitempty"`
	// Procs is how many server processes serve the mounts (a shared
	// strata server serves many); memory is summed over them, each once.
	Procs int    `json:"procs"`
	Err   string `json:"error,omitempty"`
}

// MountsReport is what RunMounts measured.
type MountsReport struct {
	Image   string      `json:"image"`
	Entries int         `json:"entries"` // of the image's merged tree
	Layers  int         `json:"layers"`
	Rows    []MountsRow `json:"rows"`
}

const mountsImageName = "bench-mounts:latest"

// RunMounts loads the image into a bench store and unpacks its layers for
// fuse-overlayfs, then for each count mounts that many read-write mounts of
// it with each contender (strata first, then fuse-overlayfs), writes a file
// into each and checks that no other mount sees it, lets them rest and reads
// the servers' memory, walks every mount with find and ls -lR, lets them
// rest, reads the servers' memory again and unmounts
// them all. Every mount it made is gone when it returns.
func RunMounts(ctx context.Context, cfg MountsConfig) (*MountsReport, error) {
	if cfg.Dir == "" {
		cfg.Dir = "/var/tmp/strata-bench"
	}
	if len(cfg.Counts) == 0 {
		cfg.Counts = []int{1, 10, 100}
	}
	if cfg.Settle == 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.Parallel < 1 {
		cfg.Parallel = 1
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	work, err := filepath.Abs(filepath.Join(cfg.Dir, "mounts"))
	if err != nil {
		return nil, err
	}
	store := filepath.Join(work, "store")
	st, err := layerstore.Open(store, nil)
	if err != nil {
		return nil, err
	}
	if _, err := st.ResolveImage(mountsImageName); err != nil {
		logf("loading %s", cfg.Image)
		if err := loadLayout(ctx, st, cfg.Image, mountsImageName); err != nil {
			return nil, fmt.Errorf("load %s: %w", cfg.Image, err)
		}
	}
	img, tree, err := st.ImageTree(mountsImageName)
	if err != nil {
		return nil, err
	}
	rp := &MountsReport{Image: cfg.Image, Entries: tree.Len(), Layers: len(img.Layers)}
	tree.Close()
	lowers, err := unpackLayers(st, img, filepath.Join(work, "layers"))
	if err != nil {
		return nil, err
	}
	_, fuseErr := exec.LookPath("fuse-overlayfs")
	for _, n := range cfg.Counts {
		for _, c := range []string{Strata, FuseOverlayfs} {
			if c == FuseOverlayfs && fuseErr != nil {
				rp.Rows = append(rp.Rows, MountsRow{Contender: c, Mounts: n, Err: "fuse-overlayfs is not installed"})
				continue
			}
			logf("%s: %d mounts", c, n)
			row := MountsRow{Contender: c, Mounts: n, Parallel: cfg.Parallel}
			if err := runMountSet(ctx, cfg, c, n, store, lowers, filepath.Join(work, "run"), &row); err != nil {
				row.Err = err.Error()
				logf("%s: %d mounts: %v", c, n, err)
			}
			rp.Rows = append(rp.Rows, row)
			if err := ctx.Err(); err != nil {
				return rp, err
			}
		}
	}
	return rp, nil
}

// unpackLayers extracts each layer's tar into a directory of its own (once):
// fuse-overlayfs's lowerdirs, topmost first. fuse-overlayfs reads the
// tars' ".wh." whiteouts as they are.
func unpackLayers(st *layerstore.Store, img layerstore.Image, dir string) ([]string, error) {
	var lowers []string
	for _, d := range img.Layers {
		ld := filepath.Join(dir, d.Encoded())
		lowers = append([]string{ld}, lowers...)
		if _, err := os.Stat(filepath.Join(dir, d.Encoded()+".done")); err == nil {
			continue
		}
		os.RemoveAll(ld)
		if err := os.MkdirAll(ld, 0o755); err != nil {
			return nil, err
		}
		rc, err := st.LayerTar(d)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command("tar", "-x", "-p", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", ld)
		cmd.Stdin = rc
		out, err := cmd.CombinedOutput()
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("unpack layer %s: %w: %s", d, err, lastLine(out))
		}
		if err := os.WriteFile(filepath.Join(dir, d.Encoded()+".done"), nil, 0o644); err != nil {
			return nil, err
		}
	}
	return lowers, nil
}

// runMountSet brings n mounts of contender c up, uses them, measures and
// takes them down.
func runMountSet(ctx context.Context, cfg MountsConfig, c string, n int, store string, lowers []string, run string, row *MountsRow) (err error) {
	if err := os.RemoveAll(run); err != nil {
		return err
	}
	mnts := make([]string, n)
	var up []string // mounted, to take down
	defer func() {
		t0 := time.Now()
		errs := forEach(len(up), cfg.Parallel, func(i int) error {
			m := up[i]
			if c != Strata {
				return unmountDir(m)
			}
			if out, err := exec.Command(cfg.Strata, "--root", store, "umount", m).CombinedOutput(); err != nil {
				unmountDir(m)
				return fmt.Errorf("strata umount %s: %w: %s", m, err, lastLine(out))
			}
			return nil
		})
		row.Down = time.Since(t0)
		err = errors.Join(err, errs)
		if left, lerr := mountsUnder(run); lerr == nil && len(left) > 0 {
			err = errors.Join(err, fmt.Errorf("still mounted after the unmounts: %v", left))
		}
		os.RemoveAll(run)
	}()
	for i := range mnts {
		mnts[i] = filepath.Join(run, strconv.Itoa(i), "mnt")
		for _, d := range []string{mnts[i], filepath.Join(run, strconv.Itoa(i), "upper"), filepath.Join(run, strconv.Itoa(i), "work")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	t0 := time.Now()
	var mu sync.Mutex
	uerr := forEach(len(mnts), cfg.Parallel, func(i int) error {
		m := mnts[i]
		if c == Strata {
			if out, err := exec.CommandContext(ctx, cfg.Strata, "--root", store, "mount", "-d", mountsImageName, m).CombinedOutput(); err != nil {
				return fmt.Errorf("strata mount -d: %w: %s", err, lastLine(out))
			}
		} else {
			base := filepath.Join(run, strconv.Itoa(i))
			if err := mountFuseOverlayfs(ctx, lowers, filepath.Join(base, "upper"), filepath.Join(base, "work"), m); err != nil {
				return err
			}
		}
		mu.Lock()
		up = append(up, m)
		mu.Unlock()
		return nil
	})
	if uerr != nil {
		return uerr
	}
	row.Up = time.Since(t0)
	// Writes in each, seen by none of the others.
	for i, m := range mnts {
		if err := os.WriteFile(filepath.Join(m, "bench-mount-"+strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
			return err
		}
	}
	for i, m := range mnts {
		ents, err := os.ReadDir(m)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "bench-mount-") && e.Name() != "bench-mount-"+strconv.Itoa(i) {
				return fmt.Errorf("%s shows %s, another mount's write", m, e.Name())
			}
		}
	}
	if err := rest(ctx, cfg.Settle); err != nil {
		return err
	}
	pids, err := serverPids(c, store, mnts)
	if err != nil {
		return err
	}
	row.Procs = len(pids)
	for _, pid := range pids {
		anon, _, _, err := procMemory(pid)
		if err != nil {
			return err
		}
		row.AnonIdle += anon
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && !slices.Contains(row.Servers, exe) {
			row.Servers = append(row.Servers, exe)
		}
	}
	for _, m := range mnts {
		for _, args := range [][]string{{"find", m}, {"ls", "-lR", m}} {
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, lastLine(errb.Bytes()))
			}
		}
	}
	if err := rest(ctx, cfg.Settle); err != nil {
		return err
	}
	for _, pid := range pids {
		anon, rss, pss, err := procMemory(pid)
		if err != nil {
			return err
		}
		row.Anon += anon
		row.RSS += rss
		row.PSS += pss
	}
	return nil
}

// rest waits d, or until ctx ends.
func rest(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serverPids finds the processes serving the mountpoints, each once (a
// shared strata server serves many): strata's from the leases,
// fuse-overlayfs's from the command lines.
func serverPids(c, store string, mnts []string) ([]int, error) {
	want := map[string]bool{}
	for _, m := range mnts {
		want[m] = true
	}
	var pids []int
	served := 0
	if c == Strata {
		st, err := layerstore.Open(store, nil)
		if err != nil {
			return nil, err
		}
		recs, err := st.Mounts()
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if want[r.Dir] {
				served++
				if !slices.Contains(pids, r.PID) {
					pids = append(pids, r.PID)
				}
			}
		}
	} else {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
			if len(args) > 1 && filepath.Base(args[0]) == "fuse-overlayfs" && want[args[len(args)-1]] {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				pids = append(pids, pid)
				served++
			}
		}
	}
	if served != len(mnts) {
		return nil, fmt.Errorf("%s: found servers for %d of %d mounts", c, served, len(mnts))
	}
	return pids, nil
}

// procMemory reads a process's anonymous and total resident memory and its
// proportional set size, in bytes.
func procMemory(pid int) (anon, rss, pss int64, err error) {
	field := func(file, name string) (int64, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, name+":"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				return kb << 10, err
			}
		}
		return 0, fmt.Errorf("pid %d: no %s in %s", pid, name, file)
	}
	if anon, err = field("status", "RssAnon"); err != nil {
		return
	}
	if rss, err = field("status", "VmRSS"); err != nil {
		return
	}
	pss, err = field("smaps_rollup", "Pss")
	return
}

// WriteTable prints the report: per count, each contender's time to mount
// and unmount them all and the servers' memory in all and per mount, and
// strata's over fuse-overlayfs's.
func (rp *MountsReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "read-write mounts of %s (%d entries, %d layers), memory after find and ls -lR in each\n\n", rp.Image, rp.Entries, rp.Layers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mounts\tat once\tcontender\tservers\tmount all\tunmount all\tanon total\tanon/mount\tPSS total\tPSS/mount\tRSS total\tanon ÷ fuse-overlayfs\tanon/mount before walks\tanon/entry walked\t")
	byKey := map[string]MountsRow{}
	for _, r := range rp.Rows {
		byKey[r.Contender+"/"+strconv.Itoa(r.Mounts)] = r
	}
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	for _, r := range rp.Rows {
		if r.Err != "" {
			fmt.Fprintf(tw, "%d\t%d\t%s\t\terror: %s\t\t\t\t\t\t\t\t\t\t\n", r.Mounts, r.Parallel, r.Contender, r.Err)
			continue
		}
		ratio := ""
		if f, ok := byKey[FuseOverlayfs+"/"+strconv.Itoa(r.Mounts)]; ok && f.Err == "" && f.Anon > 0 && r.Contender == Strata {
			ratio = fmt.Sprintf("%.2f×", float64(r.Anon)/float64(f.Anon))
		}
		n := int64(r.Mounts)
		perEntry := ""
		if rp.Entries > 0 {
			perEntry = fmt.Sprintf("%d B", (r.Anon-r.AnonIdle)/(n*int64(rp.Entries)))
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Mounts, r.Parallel, r.Contender, r.Procs,
			r.Up.Round(time.Millisecond), r.Down.Round(time.Millisecond),
			mb(r.Anon), mb(r.Anon/n), mb(r.PSS), mb(r.PSS/n), mb(r.RSS), ratio, mb(r.AnonIdle/n), perEntry)
	}
	return tw.Flush()
}

// forEach runs fn(0..n-1), at most par at once, and joins the errors.
func forEach(n, par int, fn func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
