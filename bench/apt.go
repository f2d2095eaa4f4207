package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The apt-get row: apt-get install of a few packages in a Debian image, in
// a chroot of each contender's root, from a local repository of .deb files
// the harness downloads once with this machine's apt (the image's own
// sources are not used: no network in the timed part).
var aptPackages = []string{"nginx-light", "python3-minimal"}

// aptRepoDir is where the repository shows inside the chroot.
const aptRepoDir = "mnt/strata-bench-repo"

// aptData is the apt row's image and repository.
type aptData struct {
	img  *ImageData
	repo string // directory of .deb files with a Packages index
}

// buildAptData makes, under dir, the Debian image's layer as a directory
// (for the overlay contenders and native) from debian (a directory holding
// rootfs.tar and the OCI layout oci/, as internal/fixtures makes it), and
// a repository holding aptPackages and everything they depend on. Built
// once and reused.
func buildAptData(ctx context.Context, dir, debian string, logf func(string, ...any)) (*aptData, error) {
	if debian == "" {
		return nil, errors.New("no Debian image: set STRATA_DEBIAN to the directory internal/fixtures makes (rootfs.tar, oci/)")
	}
	rootfs, layout := filepath.Join(debian, "rootfs.tar"), filepath.Join(debian, "oci")
	st, err := os.Stat(rootfs)
	if err != nil {
		return nil, fmt.Errorf("Debian image: %w", err)
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-scanpackages", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (dpkg-dev has dpkg-scanpackages)", tool)
		}
	}
	key := sha256.Sum256([]byte(fmt.Sprintf("%s %d %d %s", rootfs, st.Size(), st.ModTime().UnixNano(), strings.Join(aptPackages, " "))))
	ad := filepath.Join(dir, fmt.Sprintf("apt-%x", key[:6]))
	d := &aptData{
		img: &ImageData{Name: "bench/debian:latest", LayerDirs: []string{filepath.Join(ad, "layer")},
			Tars: []string{rootfs}, Layout: layout, Merged: filepath.Join(ad, "native"), Pristine: filepath.Join(ad, "layer")},
		repo: filepath.Join(ad, "repo"),
	}
	if _, err := os.Stat(filepath.Join(ad, "done")); err == nil {
		logf("dataset: reusing the apt image and repository %s", ad)
		return d, nil
	}
	logf("dataset: building the apt image and repository %s", ad)
	if err := os.RemoveAll(ad); err != nil {
		return nil, err
	}
	for _, p := range []string{d.img.LayerDirs[0], d.repo} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
	}
	run := func(dir string, name string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return nil, fmt.Errorf("%s: %w: %s", name, err, lastLine(ee.Stderr))
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return out, nil
	}
	if _, err := run(ad, "tar", "-xf", rootfs, "-C", d.img.LayerDirs[0], "--numeric-owner"); err != nil {
		return nil, err
	}
	// Everything the packages depend on, recursively: apt in the image
	// takes what it lacks.
	out, err := run(ad, "apt-cache", append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests",
		"--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"}, aptPackages...)...)
	if err != nil {
		return nil, err
	}
	var pkgs []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && l[0] != ' ' && l[0] != '<' {
			pkgs = append(pkgs, l)
		}
	}
	if _, err := run(d.repo, "apt-get", append([]string{"download", "-q"}, pkgs...)...); err != nil {
		return nil, fmt.Errorf("downloading %d packages: %w", len(pkgs), err)
	}
	idx, err := run(d.repo, "dpkg-scanpackages", "-m", ".")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(d.repo, "Packages"), idx, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(ad, "done"), nil, 0o644); err != nil {
		return nil, err
	}
	return d, nil
}

// aptInstall runs apt-get update and install of aptPackages in a chroot of
// root, the repository bound read-only into it, and times them. Untimed
// before: sources.list names only the repository, a policy-rc.d keeps
// maintainer scripts from starting services (nginx would listen on the
// host), and the host's /dev/null is bound over the image's (strata mounts
// are nodev).
func aptInstall(ctx context.Context, root, repo string) (time.Duration, error) {
	in := func(p string) string { return filepath.Join(root, p) }
	if err := os.MkdirAll(in(aptRepoDir), 0o755); err != nil {
		return 0, err
	}
	sl, _ := filepath.Glob(in("etc/apt/sources.list.d/*"))
	for _, p := range sl {
		if err := os.Remove(p); err != nil {
			return 0, err
		}
	}
	files := map[string]string{
		"etc/apt/sources.list": "deb [trusted=yes] file:/" + aptRepoDir + " ./\n",
		"usr/sbin/policy-rc.d": "#!/bin/sh\nexit 101\n",
	}
	for p, s := range files {
		if err := os.WriteFile(in(p), []byte(s), 0o755); err != nil {
			return 0, err
		}
	}
	binds := []struct {
		src, dst string
		ro       bool
	}{{repo, in(aptRepoDir), true}, {"/dev/null", in("dev/null"), false}}
	for _, b := range binds {
		if err := unix.Mount(b.src, b.dst, "", unix.MS_BIND, ""); err != nil {
			return 0, fmt.Errorf("bind %s: %w", b.dst, err)
		}
		defer func() {
			if unix.Unmount(b.dst, 0) != nil {
				_ = unix.Unmount(b.dst, unix.MNT_DETACH)
			}
		}()
		if b.ro {
			if err := unix.Mount("", b.dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return 0, fmt.Errorf("bind %s read-only: %w", b.dst, err)
			}
		}
	}
	script := "apt-get update -qq && apt-get install -y -qq --no-install-recommends " + strings.Join(aptPackages, " ")
	d, err := runTool(ctx, root, nil, "chroot", root, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "sh", "-c", script)
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(in("usr/sbin/nginx")); err != nil {
		return 0, fmt.Errorf("apt-get install left no nginx: %w", err)
	}
	return d, nil
}

// aptSuite measures the apt-get row on the Debian image.
func (r *runner) aptSuite(ctx context.Context) error {
	if !r.cfg.wants(WApt) {
		return nil
	}
	w := Workload{Name: WApt, Case: strings.Join(aptPackages, " "), Fresh: true,
		Desc: fmt.Sprintf("apt-get update and install of %s (and what they depend on) in a chroot of the Debian image, from a local repository; fresh mount each time", strings.Join(aptPackages, " "))}
	var why string
	if os.Geteuid() != 0 {
		why = "apt-get in a chroot needs root"
	}
	var ad *aptData
	if why == "" {
		var err error
		if ad, err = buildAptData(ctx, r.cfg.Dir, os.Getenv("STRATA_DEBIAN"), r.logf); err != nil {
			why = err.Error()
		}
	}
	if why != "" {
		r.logf("%s: skipped: %s", w.Key(), why)
		for _, c := range r.cs {
			r.rp.add(Result{Workload: w.Name, Case: w.Case, Contender: c.name, Unit: UnitSeconds, Skip: why})
		}
		r.rp.describe(w.Key(), w.Desc)
		return nil
	}
	w.Run = func(ctx context.Context, root string) (time.Duration, error) { return aptInstall(ctx, root, ad.repo) }
	ls := r.mountAll(ctx, ad.img)
	defer r.unmountAll(ls)
	if err := r.measure(ctx, w, ls); err != nil {
		return err
	}
	return r.unmountAll(ls)
}
