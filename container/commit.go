package container

import (
	"context"
	"path"
	"strings"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// mountpoints are the paths the runtime makes in a container's root for
// what it mounts there: docker's init layer holds them, so neither diff nor
// commit shows them; strata leaves them out when they are only that (an
// empty file or directory the image has not).
func (r *Record) mountpoints() fs.Skip {
	paths := map[string]bool{
		"proc": true, "sys": true, "dev": true, "etc/hostname": true, "etc/hosts": true,
		"etc/resolv.conf": true, "sbin/docker-init": true, "sys/fs/cgroup": true, "dev/shm": true,
		"dev/mqueue": true, "dev/pts": true,
	}
	for _, v := range r.Volumes {
		// The volume's path and the directories made to reach it.
		for p := strings.TrimPrefix(path.Clean(v.Destination), "/"); p != "." && p != ""; p = path.Dir(p) {
			paths[p] = true
		}
	}
	return func(p string) bool { return paths[p] }
}

// Diff lists the changes container ref made to its image, as docker diff
// does.
func (c *Containers) Diff(ref string) ([]fs.Change, error) {
	rec, err := c.records.Get(ref)
	if err != nil {
		return nil, err
	}
	m, err := session.Find(c.st, rec.MountID)
	if err != nil {
		return nil, err
	}
	return session.DiffSkipping(c.st, m, rec.mountpoints())
}

// CommitOptions describe the image Commit makes of a container.
type CommitOptions struct {
	Names           []string
	Message, Author string
}

// Commit makes a new image of container ref: its image with the changes
// of its writable layer as one more layer, and its run settings (command,
// environment, working directory, user, labels…) as the config, as docker
// commit does. A running container is committed as it is at that moment.
func (c *Containers) Commit(ctx context.Context, ref string, o CommitOptions) (layerstore.Image, error) {
	rec, err := c.records.Get(ref)
	if err != nil {
		return layerstore.Image{}, err
	}
	m, err := session.Find(c.st, rec.MountID)
	if err != nil {
		return layerstore.Image{}, err
	}
	cfg := rec.RunConfig()
	return session.Commit(ctx, c.st, m, session.CommitOptions{
		Names:     o.Names,
		Message:   o.Message,
		Author:    o.Author,
		CreatedBy: strings.Join(append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...), " "),
		Config:    &cfg,
		Skip:      rec.mountpoints(),
	})
}
