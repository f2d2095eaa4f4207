package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/bench"
)

type benchOptions struct {
	quick      bool
	dir        string
	reps       int
	only       []string
	contenders []string
	out        string
	jsonFile   string
	svgFile    string
	mdFile     string
	cpuprofile string
	randOps    int
	report     string
	mnt        benchMountsOptions
	dataset    string
	trace      bool
	results    string
	underLoad  bool
	server     string
}

func newBenchCmd(_ *globals) *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure strata against a plain directory, overlayfs and fuse-overlayfs",
		Long: `Measure a strata mount beside native (the merged tree in a plain directory),
kernel overlayfs and fuse-overlayfs on the same generated layer stack, in the
same run: metadata walks, ls -lR, small and big file reads, random reads,
copy-up, small writes, 1 to 500 layers, import and disk use. Every cell is the
median of --reps runs with its spread and its ratio to native and to overlayfs.

The main image is real by default: this machine's /usr/share, /usr/bin and
/etc in three layers with changes and whiteouts (--dataset synthetic for the
generated one); the depth, import and disk rows use generated images. Real
tools (find, GNU ls, tar, cp, dd) run beside Go imitations. The load average
is sampled through the run and rows run under more load than the cores are
marked; --results refuses such a run unless --under-load.

Writes the table to standard output and results.json, results.svg and
results.md to --out. The dataset is built under --dir once and reused.
Cold cells need root (they drop the caches); overlayfs needs root.`,
		Example: `  strata bench --quick
  strata bench --only stat-walk,ls-lR --contenders overlayfs,strata --reps 9
  strata bench --only find,gnu-ls-lR,tar --trace   # FUSE requests per run (and the server's time on them) beside the timings
  strata bench --results bench/RESULTS.md          # and record the run there (refused under load)
  strata bench --cpuprofile bench/out/strata   # then: go tool pprof -top strata bench/out/strata-ls-lR-warm.pprof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.quick, "quick", false, "a small dataset and 2 repetitions (minutes, not seconds: every contender mounts and runs every workload; the first run also builds the datasets, and the run ends by saying how long it took)")
	f.StringVar(&o.dataset, "dataset", bench.DatasetReal, "main image: real (this machine's trees) or synthetic")
	f.BoolVar(&o.trace, "trace", false, "count the FUSE requests the strata server gets per run, by opcode, with the server's time on them")
	f.StringVar(&o.results, "results", "", "also record the run in this results file (bench/RESULTS.md), between its run markers")
	f.StringVar(&o.server, "server", "", "measure the strata server of this strata binary instead of this one's (to compare two revisions with one harness)")
	f.BoolVar(&o.underLoad, "under-load", false, "with --results: record a run made under foreign load, marked as such (refused otherwise)")
	f.StringVar(&o.dir, "dir", "/var/tmp/strata-bench", "work directory: dataset, stores and mounts")
	f.IntVar(&o.reps, "reps", 0, "repetitions per cell (default 5, 2 with --quick)")
	f.StringSliceVar(&o.only, "only", nil, "run only these workloads: "+strings.Join(bench.AllWorkloads, ","))
	f.StringSliceVar(&o.contenders, "contenders", bench.AllContenders, "contenders to measure")
	f.StringVar(&o.out, "out", "bench/out", "directory for results.json, results.svg and results.md")
	f.StringVar(&o.jsonFile, "json", "", "write the JSON report here (default OUT/results.json)")
	f.StringVar(&o.svgFile, "svg", "", "write the chart here (default OUT/results.svg)")
	f.StringVar(&o.mdFile, "markdown", "", "write the Markdown report here (default OUT/results.md)")
	f.StringVar(&o.cpuprofile, "cpuprofile", "", "profile the strata server: writes PREFIX-<workload>.pprof per workload")
	f.IntVar(&o.randOps, "rand-ops", 0, "random 4 KiB reads per rand-read run (default 65536, 8192 with --quick)")
	f.StringVar(&o.report, "report", "", "measure nothing: render the results.json of an earlier run again (table, chart, Markdown)")
	o.mnt.flags(f)
	cmd.AddCommand(newBenchServeCmd())
	return cmd
}

func runBench(cmd *cobra.Command, o *benchOptions) error {
	if len(o.mnt.counts) > 0 {
		return runBenchMounts(cmd, o)
	}
	if o.report != "" {
		f, err := os.Open(o.report)
		if err != nil {
			return err
		}
		rp, err := bench.ReadJSON(f)
		f.Close()
		if err != nil {
			return err
		}
		rp.Finish()
		return writeBenchReport(cmd, o, rp)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if o.server != "" {
		if self, err = filepath.Abs(o.server); err != nil {
			return err
		}
	}
	cfg := bench.Config{
		Dir:        o.dir,
		Spec:       bench.FullSpec(),
		Dataset:    o.dataset,
		Trace:      o.trace,
		Reps:       o.reps,
		Only:       o.only,
		Contenders: o.contenders,
		Self:       []string{self, "bench", "serve"},
		RandOps:    o.randOps,
		CPUProfile: o.cpuprofile,
		Command:    "strata " + strings.Join(os.Args[1:], " "),
		Log:        cmd.ErrOrStderr(),
	}
	if o.quick {
		cfg.Spec = bench.QuickSpec()
		cfg.Real = bench.QuickRealSpec()
		if cfg.Reps == 0 {
			cfg.Reps = 2
		}
		if cfg.RandOps == 0 {
			cfg.RandOps = 8192
		}
	}
	if o.cpuprofile != "" {
		if abs, err := filepath.Abs(o.cpuprofile); err == nil {
			cfg.CPUProfile = abs
		}
		if err := os.MkdirAll(filepath.Dir(cfg.CPUProfile), 0o755); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rp, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	return writeBenchReport(cmd, o, rp)
}

// writeBenchReport writes the table to standard output and the JSON, chart
// and Markdown files.
func writeBenchReport(cmd *cobra.Command, o *benchOptions, rp *bench.Report) error {
	out := cmd.OutOrStdout()
	if err := rp.WriteTable(out); err != nil {
		return err
	}
	files := []struct {
		path  string
		def   string
		write func(io.Writer) error
	}{
		{o.jsonFile, "results.json", rp.WriteJSON},
		{o.svgFile, "results.svg", rp.WriteSVG},
		{o.mdFile, "results.md", rp.WriteMarkdown},
	}
	var errs []error
	for _, f := range files {
		p := f.path
		if p == "" {
			p = filepath.Join(o.out, f.def)
		}
		if err := writeFileWith(p, f.write); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", p)
	}
	if o.results != "" && len(errs) == 0 {
		errs = append(errs, updateResults(cmd, o, rp))
	}
	return errors.Join(errs...)
}

// updateResults records the run in the results file, with the chart
// copied beside it.
func updateResults(cmd *cobra.Command, o *benchOptions, rp *bench.Report) error {
	doc, err := os.ReadFile(o.results)
	if err != nil {
		return err
	}
	chart := "results.svg"
	out, err := rp.UpdateResults(doc, chart, o.underLoad)
	if err != nil {
		return fmt.Errorf("%s not updated: %w", o.results, err)
	}
	dir := filepath.Dir(o.results)
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"results.svg", rp.WriteSVG}, {"results.json", rp.WriteJSON}} {
		if err := writeFileWith(filepath.Join(dir, f.name), f.write); err != nil {
			return err
		}
	}
	if err := os.WriteFile(o.results, out, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "recorded the run in %s\n", o.results)
	return nil
}

func writeFileWith(p string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	return errors.Join(write(f), f.Close())
}

// newBenchServeCmd is the strata contender's server: the harness runs it in
// a child process and talks to it over standard input and output.
func newBenchServeCmd() *cobra.Command {
	o := bench.ServeOptions{}
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "Mount an image for the benchmark harness (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.In, o.Out = cmd.InOrStdin(), cmd.OutOrStdout()
			return bench.Serve(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Store, "store", "", "store root")
	f.StringVar(&o.Image, "image", "", "image to mount")
	f.StringVar(&o.Dir, "dir", "", "mountpoint")
	f.BoolVar(&o.ReadOnly, "read-only", false, "mount without a top layer")
	f.BoolVar(&o.NoPassthrough, "no-passthrough", false, "serve every read and write in the server (a writable mount then has the writeback cache)")
	f.BoolVar(&o.Trace, "trace", false, "count FUSE requests by opcode (the trace command)")
	for _, n := range []string{"store", "image", "dir"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}
