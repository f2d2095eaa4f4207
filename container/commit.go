package container

import (
	"context"
	"strings"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// mountpoints are what the runtime makes in the container's root (see
// Mountpoints).
func (r *Record) mountpoints() fs.Skip {
	vols := make([]string, 0, len(r.Volumes))
	for _, v := range r.Volumes {
		vols = append(vols, v.Destination)
	}
	return Mountpoints(vols)
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
	Progress        func(layerstore.Progress) // as session.CommitOptions's
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
		Progress:  o.Progress,
	})
}
