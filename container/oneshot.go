package container

import (
	"context"
	"errors"
	"path"
	"path/filepath"
	"strings"

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
	return r.Run(ctx, id, bundle, stdio, nil)
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
