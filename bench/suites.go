package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// Import contenders beside native (tar -x) and strata.
const (
	TarSync = "tar-x+sync"
	Umoci   = "umoci"
)

// importer is one way of importing the main image.
type importer struct {
	name, label string
	run         func(ctx context.Context, target string) error
}

// importSuite times getting the main image's layers onto disk: tar -x of
// every layer into a directory of its own (what an overlay driver does),
// the same followed by sync (strata's import is durable when it returns),
// umoci unpack when installed, and strata's load into an empty store.
func (r *runner) importSuite(ctx context.Context) error {
	if !r.cfg.wants(WImport) {
		return nil
	}
	img := r.ds.Main
	tarX := func(ctx context.Context, target string) error {
		for i, t := range img.Tars {
			d := filepath.Join(target, fmt.Sprint(i))
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if out, err := exec.CommandContext(ctx, "tar", "-xf", t, "-C", d).CombinedOutput(); err != nil {
				return fmt.Errorf("tar -x %s: %w: %s", t, err, lastLine(out))
			}
		}
		return nil
	}
	ims := []importer{
		{Native, "tar -x", tarX},
		{TarSync, "tar -x; sync", func(ctx context.Context, target string) error {
			if err := tarX(ctx, target); err != nil {
				return err
			}
			unix.Sync()
			return nil
		}},
	}
	umociWhy := ""
	if _, err := exec.LookPath("umoci"); err != nil {
		umociWhy = "umoci is not installed"
	}
	ims = append(ims, importer{Umoci, "umoci unpack", func(ctx context.Context, target string) error {
		if umociWhy != "" {
			return errors.New(umociWhy)
		}
		out, err := exec.CommandContext(ctx, "umoci", "unpack", "--image", img.Layout+":latest", filepath.Join(target, "bundle")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("umoci unpack: %w: %s", err, lastLine(out))
		}
		return nil
	}})
	ims = append(ims, importer{Strata, "strata load", func(ctx context.Context, target string) error {
		s, err := layerstore.Open(target, nil)
		if err != nil {
			return err
		}
		return loadLayout(ctx, s, img.Layout, img.Name)
	}})

	key := fmt.Sprintf("%d layers", len(img.Tars))
	desc := fmt.Sprintf("import the main image (%d layers, %s of tar) into an empty target: tar -x of each layer into a directory of its own (what an overlay driver does), the same followed by sync, umoci unpack, and strata load (digests verified, objects fsynced); the tars warm in the page cache, sync before each run",
		len(img.Tars), fmtBytes(float64(tarBytes(img))))
	r.logf("%s: %s", WImport, desc)
	// Warm the source so that every importer reads it from memory.
	for _, t := range img.Tars {
		if err := readAll(t); err != nil {
			return err
		}
	}
	cells := make([]*cell, len(ims))
	for i, im := range ims {
		cells[i] = &cell{res: Result{Workload: WImport, Case: key, Contender: im.name, Label: im.label, Unit: UnitSeconds}}
		if im.name == Umoci && umociWhy != "" {
			cells[i].res.Skip, cells[i].dead = umociWhy, true
		}
	}
	idx := make([]int, len(ims))
	for i := range idx {
		idx[i] = i
	}
	n := 0
	for rep := 0; rep < r.cfg.Reps; rep++ {
		for _, i := range rotate(idx, rep) {
			c, im := cells[i], ims[i]
			if err := ctx.Err(); err != nil {
				return err
			}
			if c.dead {
				continue
			}
			n++
			target := filepath.Join(r.runDir, fmt.Sprintf("import-%d", n))
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			unix.Sync()
			d, err := timed(func() error { return im.run(ctx, target) })
			if rerr := os.RemoveAll(target); err == nil {
				err = rerr
			}
			if err != nil {
				c.res.Err, c.dead = err.Error(), true
				r.logf("  %s: %v", im.name, err)
				continue
			}
			c.res.Samples = append(c.res.Samples, d.Seconds())
		}
	}
	for _, c := range cells {
		if c.res.Err != "" {
			c.res.Samples = nil
		}
		r.rp.add(c.res)
		if c.res.Err == "" && c.res.Skip == "" {
			st := Summarize(c.res.Samples)
			r.logf("  %-15s %10s ±%.0f%%", c.res.Contender, fmtDur(st.Median), st.Spread*100)
		}
	}
	r.rp.describe(WImport+"/"+key, desc)
	return nil
}

func tarBytes(img *ImageData) int64 {
	var n int64
	for _, t := range img.Tars {
		if fi, err := os.Stat(t); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func readAll(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = drain(f, make([]byte, 1<<20))
	return err
}

// diskSuite compares the bytes on disk of DiskImages images that share most
// of their files: strata's store holding all of them, and their layers
// unpacked one directory per layer as an overlay driver keeps them (a layer
// that several images share unpacked once). The native row is what
// unpacking every image into a rootfs of its own would take, computed from
// the same directories.
func (r *runner) diskSuite(ctx context.Context) error {
	if !r.cfg.wants(WDisk) || len(r.ds.Disk) == 0 {
		return nil
	}
	imgs := r.ds.Disk
	key := fmt.Sprintf("%d images", len(imgs))
	desc := fmt.Sprintf("bytes on disk for %d images: a shared base layer (%d entries) and an app layer each (%d files, 90%% the same bytes in every image, other mtimes); native is every image unpacked into a rootfs of its own (computed from the layer directories), overlayfs one directory per distinct layer as overlay2 keeps them, strata its store",
		len(imgs), r.ds.DeepEntries, r.ds.Spec.AppFiles)
	r.logf("%s: %s", WDisk, desc)
	var layerDirs []string
	for _, img := range imgs {
		for _, d := range img.LayerDirs {
			if !slices.Contains(layerDirs, d) {
				layerDirs = append(layerDirs, d)
			}
		}
	}
	ovl, err := layerstore.DirUsage(layerDirs...)
	if err != nil {
		return err
	}
	var native int64
	for _, img := range imgs {
		n, err := layerstore.DirUsage(img.LayerDirs...)
		if err != nil {
			return err
		}
		native += n
	}
	res := []Result{
		{Workload: WDisk, Case: key, Contender: Native, Label: "rootfs per image", Unit: UnitBytes, Samples: []float64{float64(native)}},
		{Workload: WDisk, Case: key, Contender: Overlayfs, Label: "dir per layer", Unit: UnitBytes, Samples: []float64{float64(ovl)}},
	}
	sr := Result{Workload: WDisk, Case: key, Contender: Strata, Label: "strata store", Unit: UnitBytes}
	storeDir := filepath.Join(r.runDir, "disk-store")
	t0 := time.Now()
	err = func() error {
		s, err := layerstore.Open(storeDir, nil)
		if err != nil {
			return err
		}
		for _, img := range imgs {
			if err := loadLayout(ctx, s, img.Layout, img.Name); err != nil {
				return fmt.Errorf("load %s: %w", img.Name, err)
			}
		}
		n, err := layerstore.DirUsage(storeDir)
		sr.Samples = []float64{float64(n)}
		return err
	}()
	if err != nil {
		sr.Err, sr.Samples = err.Error(), nil
	}
	r.logf("  loaded %d images into a store in %s", len(imgs), time.Since(t0).Round(time.Millisecond))
	res = append(res, sr)
	for _, x := range res {
		r.rp.add(x)
		if x.Err == "" {
			r.logf("  %-15s %10s", x.Contender, fmtBytes(x.Samples[0]))
		}
	}
	r.rp.describe(WDisk+"/"+key, desc)
	return os.RemoveAll(storeDir)
}
