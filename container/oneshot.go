package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-dev/strata/fs"
)

// RunOnce runs the command of cfg (Entrypoint and Cmd, as Spec puts them)
// as container id, in the foreground, with the mount at rootfs as its root
// file system (a mount session the caller owns and commits): a build's RUN
// step. Nothing is recorded and nothing logged; the output goes to stdio.
// The bundle and the container's /etc files go under dir, which the caller
// removes. A private network gets a slirp4netns of its own for the run.
// Cancelling ctx kills the container. The status is as Run's.
func (r *Runtime) RunOnce(ctx context.Context, id, dir, rootfs string, cfg ocispec.ImageConfig, o Options, stdio Stdio) (code int, err error) {
	if o.Network == NetworkPrivate {
		pn, nerr := startPrivateNet(id)
		if nerr != nil {
			return ExitRuntimeFailed, nerr
		}
		defer func() { err = errors.Join(err, pn.stop()) }()
		if nerr := pn.up(nil); nerr != nil {
			return ExitRuntimeFailed, nerr
		}
		o.NetNSPath = pn.path
	}
	spec, err := Spec(id, rootfs, filepath.Join(dir, "etc"), cfg, o)
	if err != nil {
		return ExitRuntimeFailed, err
	}
	bundle := filepath.Join(dir, "bundle")
	if err := WriteBundle(bundle, spec); err != nil {
		return ExitRuntimeFailed, err
	}
	stop, err := r.watchdog(id)
	if err != nil {
		return ExitRuntimeFailed, err
	}
	defer stop()
	defer startWarm(rootfs, spec)()
	return r.Run(ctx, id, bundle, stdio, nil)
}

// watchdog makes container id die with this process, which has no
// supervisor to outlive it: runc run, killed or not, leaves the container
// running. A shell in a process group of its own (so a terminal's ^C to
// this one's does not end it first) waits to read a pipe whose only writer
// is this process; at its end, when this process dies, it deletes the
// container, killing it (runc delete --force). stop ends the watchdog
// without a runc process.
func (r *Runtime) watchdog(id string) (stop func(), err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd := exec.Command("/bin/sh", "-c", `read _; exec "$0" --root "$1" delete --force "$2" >/dev/null 2>&1`, r.binary(), r.root(), id)
	cmd.Stdin = pr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("container %s: its watchdog: %w", id, err)
	}
	return func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pw.Close()
	}, nil
}

// Mountpoints are the paths the runtime makes in a container's root for
// what it mounts there (and for volumes at vols): docker's init layer holds
// them, so neither diff nor commit shows them; strata leaves them out when
// they are only that (an empty file or directory the image has not).
func Mountpoints(vols []string) fs.Skip {
	paths := map[string]bool{
		"proc": true, "sys": true, "dev": true, "etc/hostname": true, "etc/hosts": true,
		"etc/resolv.conf": true, "sbin/docker-init": true, "sys/fs/cgroup": true, "dev/shm": true,
		"dev/mqueue": true, "dev/pts": true,
	}
	for _, v := range vols {
		// The volume's path and the directories made to reach it.
		for p := strings.TrimPrefix(path.Clean(v), "/"); p != "." && p != ""; p = path.Dir(p) {
			paths[p] = true
		}
	}
	return func(p string) bool { return paths[p] }
}

// ForceDelete kills container id and deletes it from the runtime's state,
// whatever state it is in (a RunOnce container its supervisor left behind).
func (r *Runtime) ForceDelete(id string) { r.forceDelete(id) }
