package container

import (
	"maps"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RunConfig is the container's config as docker keeps it (and as commit
// writes it into a new image): the image's, with the run's Entrypoint, Cmd,
// Env (the run's entries first, then the image's it does not set),
// WorkingDir, User, StopSignal, Labels and volumes laid over it.
func (r *Record) RunConfig() ocispec.ImageConfig {
	c := r.Config
	c.Entrypoint = slices.Clone(c.Entrypoint)
	c.Cmd = slices.Clone(c.Cmd)
	if r.Options.Entrypoint != nil {
		c.Entrypoint, c.Cmd = slices.Clone(r.Options.Entrypoint), nil
		if len(c.Entrypoint) == 0 {
			c.Entrypoint = nil
		}
	}
	if len(r.Options.Cmd) > 0 {
		c.Cmd = slices.Clone(r.Options.Cmd)
	}
	set := map[string]bool{}
	var env []string
	for _, kv := range r.Options.Env {
		if k, _, ok := strings.Cut(kv, "="); ok { // KEY alone took the host's value at start
			env = append(env, kv)
			set[k] = true
		}
	}
	for _, kv := range r.Config.Env {
		k, _, _ := strings.Cut(kv, "=")
		if !set[k] {
			env = append(env, kv)
		}
	}
	c.Env = env
	if r.Options.WorkingDir != "" {
		c.WorkingDir = r.Options.WorkingDir
	}
	if r.Options.User != "" {
		c.User = r.Options.User
	}
	if r.StopSignal != "" {
		c.StopSignal = r.StopSignal
	}
	if len(r.Labels) > 0 {
		c.Labels = maps.Clone(c.Labels)
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		maps.Copy(c.Labels, r.Labels)
	}
	c.Volumes = maps.Clone(c.Volumes)
	for _, v := range r.Volumes {
		if v.Type == "volume" && v.Anonymous {
			if c.Volumes == nil {
				c.Volumes = map[string]struct{}{}
			}
			c.Volumes[v.Destination] = struct{}{}
		}
	}
	return c
}
