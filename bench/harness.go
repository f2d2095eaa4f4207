package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Config configures a run.
type Config struct {
	// Dir is the work directory: the dataset, the stores, the mounts.
	// Default /var/tmp/strata-bench.
	Dir string
	// Spec sizes the data. Default FullSpec().
	Spec Spec
	// Dataset is the main image the main workloads and the goals use:
	// DatasetReal (default) or DatasetSynthetic. The depth, import and disk
	// workloads use the synthetic images either way.
	Dataset string
	// Real sizes the real dataset. Default FullRealSpec().
	Real RealSpec
	// Trace counts the FUSE requests the strata server gets, by opcode,
	// per workload run.
	Trace bool
	// Reps is how many times each cell is measured. Default 5.
	Reps int
	// Only limits the run to these workloads (AllWorkloads names). Default
	// all.
	Only []string
	// Contenders to run. Default AllContenders.
	Contenders []string
	// Self is the command line that runs Serve with its flags appended
	// (the CLI passes its own binary and "bench serve"). Without it the
	// strata column says why it is missing.
	Self []string
	// RandOps is how many random reads rand-read makes. Default 65536.
	RandOps int
	// CPUProfile, when set, is a file name prefix: the strata server writes
	// PREFIX-<workload>.pprof for every main and depth workload.
	CPUProfile string
	// Command is recorded in the report as the command that ran.
	Command string
	// Log receives progress lines. Default: discard.
	Log io.Writer
}

func (c *Config) defaults() {
	if c.Dir == "" {
		c.Dir = "/var/tmp/strata-bench"
	}
	if c.Spec.Files == 0 {
		c.Spec = FullSpec()
	}
	if c.Reps <= 0 {
		c.Reps = 5
	}
	if c.Dataset == "" {
		c.Dataset = DatasetReal
	}
	if len(c.Real.Base) == 0 {
		c.Real = FullRealSpec()
	}
	if len(c.Contenders) == 0 {
		c.Contenders = AllContenders
	}
	if c.RandOps <= 0 {
		c.RandOps = 65536
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

func (c *Config) wants(workload string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, workload)
}

// runner is the state of one run.
type runner struct {
	cfg    Config
	ds     *Dataset
	rp     *Report
	mounts mountSet
	dirs   dirCounter
	runDir string
	cs     []*contender
	// dropWhy is why cold cells cannot run ("" when they can).
	dropWhy string
	start   time.Time
	load    *loadSampler
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Run runs the benchmark and returns its report. Every mount it made is
// undone before it returns, also on error and on cancellation.
func Run(ctx context.Context, cfg Config) (rp *Report, err error) {
	cfg.defaults()
	for _, w := range cfg.Only {
		if !slices.Contains(AllWorkloads, w) {
			return nil, fmt.Errorf("unknown workload %q (have %s)", w, strings.Join(AllWorkloads, ", "))
		}
	}
	for _, c := range cfg.Contenders {
		if !slices.Contains(knownContenders, c) {
			return nil, fmt.Errorf("unknown contender %q (have %s)", c, strings.Join(knownContenders, ", "))
		}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	r := &runner{cfg: cfg, rp: &Report{}, runDir: filepath.Join(dir, "run"), start: time.Now()}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Mounts a killed run left behind.
	stale, err := mountsUnder(dir)
	if err != nil {
		return nil, err
	}
	for _, m := range stale {
		r.logf("detaching a stale mount %s", m)
		if err := unmountDir(m); err != nil {
			r.logf("%v", err)
		}
	}
	if err := os.RemoveAll(r.runDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(r.runDir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		err = errors.Join(err, r.mounts.releaseAll())
		if left, _ := mountsUnder(r.runDir); len(left) > 0 {
			err = errors.Join(err, fmt.Errorf("mounts left behind: %s", strings.Join(left, ", ")))
		} else if os.Getenv("STRATA_BENCH_KEEP") == "" {
			err = errors.Join(err, os.RemoveAll(r.runDir))
		}
	}()
	if cfg.Dataset != DatasetReal && cfg.Dataset != DatasetSynthetic {
		return nil, fmt.Errorf("unknown dataset %q (have %s, %s)", cfg.Dataset, DatasetReal, DatasetSynthetic)
	}
	if r.ds, err = BuildDataset(dir, cfg.Spec, r.logf); err != nil {
		return nil, err
	}
	if cfg.Dataset == DatasetReal {
		img, small, entries, err := buildReal(dir, cfg.Real, cfg.Spec.Seed, r.logf)
		if err != nil {
			return nil, err
		}
		r.ds.Main, r.ds.BigFile, r.ds.SmallFiles, r.ds.Entries = img, realBigFile, small, entries
		r.ds.Spec.BigSize = cfg.Real.BigSize
		r.ds.Real = &cfg.Real
	}
	r.dropWhy = canDropCaches()
	r.rp.Meta = collectMeta(cfg, r.ds)
	r.load = startLoadSampler(2 * time.Second)
	defer r.load.stop()
	r.cs = r.contenders()
	for _, c := range r.cs {
		if c.why != "" {
			r.rp.Meta.Contenders[c.name] = "unavailable: " + c.why
			r.logf("%s: unavailable: %s", c.name, c.why)
		}
	}

	steps := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"main", r.mainSuite},
		{WApt, r.aptSuite},
		{WDepth, r.depthSuite},
		{WImport, r.importSuite},
		{WDisk, r.diskSuite},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.run(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	r.rp.Meta.Elapsed = time.Since(r.start).Seconds()
	r.rp.Meta.Load = append(r.rp.Meta.Load, loadAvg())
	r.rp.Meta.LoadSeries, r.rp.Meta.LoadMax = r.load.series()
	r.logf("run took %s; highest 1-minute load %.1f on %d CPUs", fmtDur(r.rp.Meta.Elapsed), r.rp.Meta.LoadMax, r.rp.Meta.CPUs)
	r.rp.Finish()
	return r.rp, nil
}

func (r *runner) contenders() []*contender {
	var cs []*contender
	for _, name := range r.cfg.Contenders {
		switch name {
		case Native:
			cs = append(cs, newNative(r.ds))
		case Overlayfs, FuseOverlayfs:
			cs = append(cs, newOverlay(r.runDir, name, &r.dirs))
		case Strata, StrataWriteback:
			cs = append(cs, newStrata(name, r.runDir, filepath.Join(r.runDir, "store"), r.cfg.Self, r.cfg.Trace, &r.dirs, r.logf))
		}
	}
	return cs
}

// rotate returns xs rotated left by k.
func rotate[T any](xs []T, k int) []T {
	if len(xs) == 0 {
		return xs
	}
	k %= len(xs)
	return append(slices.Clone(xs[k:]), xs[:k]...)
}

// live is a contender's mount of the image a suite works on, or why there
// is none.
type live struct {
	c   *contender
	m   *mounted
	why string
	err string
}

// mountAll prepares and mounts img for every contender.
func (r *runner) mountAll(ctx context.Context, img *ImageData) []*live {
	var ls []*live
	for _, c := range r.cs {
		l := &live{c: c, why: c.why}
		ls = append(ls, l)
		if l.why != "" {
			continue
		}
		if err := c.prepare(ctx, img); err != nil {
			l.err = err.Error()
			r.logf("%s: %v", c.name, err)
			continue
		}
		m, err := c.mount(ctx, img)
		if err != nil {
			l.err = err.Error()
			r.logf("%s: %v", c.name, err)
			continue
		}
		r.mounts.add(m)
		l.m = m
		if _, ok := r.rp.Meta.Contenders[c.name]; !ok {
			r.rp.Meta.Contenders[c.name] = m.note
		}
	}
	return ls
}

func (r *runner) unmountAll(ls []*live) error {
	var errs []error
	for _, l := range ls {
		if l.m != nil {
			errs = append(errs, r.mounts.release(l.m))
			l.m = nil
		}
	}
	return errors.Join(errs...)
}

// cell collects the samples of one contender in one row.
type cell struct {
	res  Result
	dead bool // failed or skipped: no more repetitions
}

// measure runs w Reps times on every live mount, contenders interleaved.
func (r *runner) measure(ctx context.Context, w Workload, ls []*live) error {
	cells := make([]*cell, len(ls))
	for i, l := range ls {
		cells[i] = &cell{res: Result{Workload: w.Name, Case: w.Case, Contender: l.c.name, Unit: UnitSeconds}}
		switch {
		case l.why != "":
			cells[i].res.Skip, cells[i].dead = l.why, true
		case l.err != "":
			cells[i].res.Err, cells[i].dead = l.err, true
		case w.Cold && r.dropWhy != "":
			cells[i].res.Skip, cells[i].dead = r.dropWhy, true
		}
	}
	r.logf("%s: %s", w.Key(), w.Desc)
	t0 := time.Now()
	traces := make([]opTrace, len(ls))
	traceRuns := make([]int, len(ls))
	addTrace := func(i int) {
		l := ls[i]
		if l.m == nil || l.m.trace == nil {
			return
		}
		t, err := l.m.trace()
		if err != nil {
			r.logf("  trace: %v", err)
			return
		}
		if traces[i].n == nil {
			traces[i] = opTrace{n: map[string]uint64{}, ns: map[string]uint64{}}
		}
		for k, v := range t.n {
			traces[i].n[k] += v
		}
		for k, v := range t.ns {
			traces[i].ns[k] += v
		}
	}
	fail := func(c *cell, err error) {
		c.res.Err, c.dead = err.Error(), true
		r.logf("  %s: %v", c.res.Contender, err)
	}
	if !w.Cold && !w.Fresh {
		for i, l := range ls {
			if cells[i].dead {
				continue
			}
			if _, err := w.Run(ctx, l.m.root); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fail(cells[i], fmt.Errorf("warm-up: %w", err))
			}
			if l.m.trace != nil {
				_, _ = l.m.trace() // the warm-up's requests are not counted
			}
		}
	}
	var prof *live
	for _, l := range ls {
		if l.m != nil && l.m.profile != nil && r.cfg.CPUProfile != "" && !w.Fresh {
			prof = l
			if err := l.m.profile(r.profileFile(w)); err != nil {
				r.logf("  profile: %v", err)
				prof = nil
			}
		}
	}
	idx := make([]int, len(ls))
	for i := range idx {
		idx[i] = i
	}
	for rep := 0; rep < r.cfg.Reps; rep++ {
		for _, i := range rotate(idx, rep) {
			c, l := cells[i], ls[i]
			if err := ctx.Err(); err != nil {
				return err
			}
			if c.dead {
				continue
			}
			if w.Fresh {
				if err := l.m.fresh(ctx); err != nil {
					if l.c.name == Overlayfs {
						err = fmt.Errorf("%w (the overlayfs baseline of this row is missing, not replaced)", err)
					}
					fail(c, fmt.Errorf("fresh mount: %w", err))
					continue
				}
			}
			switch {
			case w.Cold:
				if err := dropCaches(); err != nil {
					return err
				}
			case w.Fresh:
				// Write back what earlier repetitions wrote, so that this
				// one does not pay for it.
				unix.Sync()
			}
			profiling := w.Fresh && l.m.profile != nil && r.cfg.CPUProfile != ""
			if profiling {
				if err := l.m.profile(r.profileFile(w)); err != nil {
					r.logf("  profile: %v", err)
					profiling = false
				}
			}
			d, err := w.Run(ctx, l.m.root)
			if profiling {
				if err := l.m.profile(""); err != nil {
					r.logf("  profile: %v", err)
				}
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fail(c, err)
				continue
			}
			c.res.Samples = append(c.res.Samples, d.Seconds())
			if w.Fresh || w.Cold {
				addTrace(i) // a fresh mount is a new server; cold: per run anyway
			}
			traceRuns[i]++
		}
	}
	for i := range ls {
		if !w.Fresh && !w.Cold {
			addTrace(i)
		}
		if traces[i].n != nil && traceRuns[i] > 0 {
			runs := float64(traceRuns[i])
			cells[i].res.Trace = map[string]float64{}
			for k, v := range traces[i].n {
				cells[i].res.Trace[k] = float64(v) / runs
			}
			for k, v := range traces[i].ns {
				if v > 0 {
					if cells[i].res.TraceTime == nil {
						cells[i].res.TraceTime = map[string]float64{}
					}
					cells[i].res.TraceTime[k] = float64(v) / 1e9 / runs
				}
			}
		}
	}
	maxLoad := r.load.maxSince(t0)
	if prof != nil {
		if err := prof.m.profile(""); err != nil {
			r.logf("  profile: %v", err)
		}
	}
	for _, c := range cells {
		if c.res.Err != "" {
			c.res.Samples = nil // a cell that failed once is not a measurement
		}
		c.res.Load = maxLoad
		r.rp.add(c.res)
		if c.res.Err == "" && c.res.Skip == "" {
			st := Summarize(c.res.Samples)
			r.logf("  %-15s %10s ±%.0f%%", c.res.Contender, fmtDur(st.Median), st.Spread*100)
		}
	}
	r.rp.describe(w.Key(), w.Desc)
	return nil
}

func (r *runner) profileFile(w Workload) string {
	name := strings.NewReplacer("/", "-", " ", "-", "=", "").Replace(w.Key())
	return fmt.Sprintf("%s-%s.pprof", r.cfg.CPUProfile, name)
}

func (r *runner) mainSuite(ctx context.Context) error {
	var ws []Workload
	for _, w := range mainWorkloads(r.ds, r.cfg.RandOps) {
		if r.cfg.wants(w.Name) {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	ls := r.mountAll(ctx, r.ds.Main)
	defer r.unmountAll(ls)
	for _, w := range ws {
		if err := r.measure(ctx, w, ls); err != nil {
			return err
		}
	}
	return r.unmountAll(ls)
}

// depthSuite mounts the same tree made of 1 to 500 layers: each repetition
// times the mount, warms the caches with one walk and times a second.
func (r *runner) depthSuite(ctx context.Context) error {
	if !r.cfg.wants(WDepth) {
		return nil
	}
	want := r.ds.DeepEntries + 1
	cs := r.cs
	if slices.Contains(r.cfg.Contenders, Overlayfs) {
		cs = append(slices.Clone(cs), newOverlay(r.runDir, OverlayfsMount2, &r.dirs))
	}
	for di, n := range r.ds.Spec.Depths {
		img := r.ds.Deep[di]
		mountKey := fmt.Sprintf("mount layers=%d", n)
		walkKey := fmt.Sprintf("walk layers=%d", n)
		treeKey := fmt.Sprintf("tree load layers=%d", n)
		r.logf("%s: the same %d entries in %d layers", WDepth, want, n)
		// Rows in this order, whoever is measured first.
		r.rp.describe(WDepth+"/"+mountKey, fmt.Sprintf("mount the %d-entry tree made of %d layers (strata: server start, tree load, FUSE mount)", want, n))
		if slices.ContainsFunc(cs, func(c *contender) bool { return c.name == Strata && c.why == "" }) {
			r.rp.describe(WDepth+"/"+treeKey, "strata: the part of its mount time spent loading the merged tree from the store (the only part that could depend on the layer count)")
		}
		r.rp.describe(WDepth+"/"+walkKey, "warm stat walk of it")
		type dcell struct {
			mount, walk, tree Result
			dead              bool
		}
		cells := make([]*dcell, len(cs))
		for i, c := range cs {
			dc := &dcell{mount: Result{Workload: WDepth, Case: mountKey, Contender: c.name, Unit: UnitSeconds},
				walk: Result{Workload: WDepth, Case: walkKey, Contender: c.name, Unit: UnitSeconds},
				tree: Result{Workload: WDepth, Case: treeKey, Contender: c.name, Unit: UnitSeconds}}
			cells[i] = dc
			switch {
			case c.why != "":
				dc.mount.Skip, dc.walk.Skip, dc.dead = c.why, c.why, true
			case c.name == Native:
				dc.mount.Skip = "a plain directory needs no mount"
			case c.name == OverlayfsMount2:
				dc.walk.Skip = "the same mount as overlayfs"
			}
			if dc.dead {
				continue
			}
			if err := c.prepare(ctx, img); err != nil {
				dc.mount.Err, dc.walk.Err, dc.dead = err.Error(), err.Error(), true
			}
		}
		idx := make([]int, len(cs))
		for i := range idx {
			idx[i] = i
		}
		for rep := 0; rep < r.cfg.Reps; rep++ {
			for _, i := range rotate(idx, rep) {
				c, dc := cs[i], cells[i]
				if err := ctx.Err(); err != nil {
					return err
				}
				if dc.dead {
					continue
				}
				t0 := time.Now()
				m, err := c.mount(ctx, img)
				took := time.Since(t0)
				if err != nil {
					msg := "cannot mount: " + err.Error()
					dc.mount.Err, dc.dead = msg, true
					if dc.walk.Skip == "" {
						dc.walk.Err = msg
					}
					r.logf("  %s: %s", c.name, msg)
					continue
				}
				r.mounts.add(m)
				if c.name != Native {
					dc.mount.Samples = append(dc.mount.Samples, took.Seconds())
				}
				if m.phases != nil {
					if d, ok := m.phases()["tree"]; ok {
						dc.tree.Samples = append(dc.tree.Samples, d.Seconds())
					}
				}
				if dc.walk.Skip != "" {
					if err := r.mounts.release(m); err != nil {
						dc.mount.Err, dc.dead = err.Error(), true
					}
					continue
				}
				prof := rep == 0 && m.profile != nil && r.cfg.CPUProfile != ""
				err = statWalk(ctx, m.root, want)
				if err == nil {
					if prof {
						prof = m.profile(r.profileFile(Workload{Name: WDepth, Case: walkKey})) == nil
					}
					var d time.Duration
					d, err = timed(func() error { return statWalk(ctx, m.root, want) })
					dc.walk.Samples = append(dc.walk.Samples, d.Seconds())
					if prof {
						m.profile("")
					}
				}
				if uerr := r.mounts.release(m); uerr != nil && err == nil {
					err = uerr
				}
				if err != nil {
					dc.walk.Err, dc.dead = err.Error(), true
					r.logf("  %s: %v", c.name, err)
				}
			}
		}
		for _, dc := range cells {
			for _, res := range []Result{dc.mount, dc.tree, dc.walk} {
				if res.Err == "" && res.Skip == "" && len(res.Samples) == 0 && res.Case == treeKey {
					continue // only strata reports its tree load
				}
				if res.Err != "" {
					res.Samples = nil
				}
				r.rp.add(res)
				if res.Err == "" && res.Skip == "" {
					st := Summarize(res.Samples)
					r.logf("  %-15s %-18s %10s ±%.0f%%", res.Contender, res.Case, fmtDur(st.Median), st.Spread*100)
				}
			}
		}
	}
	return nil
}
