package transfer

import (
	"context"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/transfer/registry"
)

// PushOptions tune Push.
type PushOptions struct {
	Compression string // registry.Gzip (default) or registry.Zstd
	// Progress, if set, receives docker's per-layer status lines
	// ("Preparing", "Pushing", "Pushed", "Layer already exists",
	// "Mounted from …"), serialized.
	Progress func(registry.Event)
}

// Push writes the stored image ref names (as it is tagged locally, the
// registry's name included: "localhost:5000/app:v1") to its registry, the
// same ImageSource a save reads. Registry blobs the store knows hold a
// layer are offered first; repositories of the same registry that images
// with the layer came from or went to are asked to mount it. The pushed
// manifest's repo digest is recorded on the image.
func Push(ctx context.Context, s *layerstore.Store, c *registry.Client, ref registry.Reference, opt PushOptions) (registry.PushResult, error) {
	name := ref.Name()
	img, err := s.ResolveImage(name)
	if err != nil {
		return registry.PushResult{}, fmt.Errorf("An image does not exist locally with the tag: %s: %w", ref.Repo(), err)
	}
	src, err := s.ImageSource(&img)
	if err != nil {
		return registry.PushResult{}, err
	}
	mountFrom, err := siblings(s, ref)
	if err != nil {
		return registry.PushResult{}, err
	}
	var recErr error
	res, err := c.Push(ctx, ref, src, registry.PushOptions{
		Compression: opt.Compression,
		Progress:    opt.Progress,
		TmpDir:      s.TmpDir(),
		Known: func(d digest.Digest) map[digest.Digest]string {
			li, err := s.Layer(d)
			if err != nil {
				return nil
			}
			return li.MediaTypes
		},
		MountFrom: func(d digest.Digest) []string { return mountFrom[d] },
		Pushed: func(diffID, blob digest.Digest, mediaType string) {
			if err := s.AddLayerBlob(diffID, blob, mediaType); err != nil && recErr == nil {
				recErr = err
			}
		},
	})
	if err != nil {
		return res, fmt.Errorf("push %s: %w", ref.Familiar(), err)
	}
	if recErr != nil {
		return res, recErr
	}
	return res, s.AddRepoDigest(name, ref.RepoDigest(res.Digest))
}

// siblings maps each stored layer to the repositories of ref's registry
// (paths inside it) that images holding the layer were pulled from or
// pushed to, by their repo digests.
func siblings(s *layerstore.Store, ref registry.Reference) (map[digest.Digest][]string, error) {
	imgs, err := s.Images()
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest][]string{}
	for _, img := range imgs {
		for _, rd := range img.RepoDigests {
			r, err := registry.ParseReference(rd)
			if err != nil || r.Domain() != ref.Domain() || r.Path() == ref.Path() {
				continue
			}
			for _, d := range img.Layers {
				if !slices.Contains(out[d], r.Path()) {
					out[d] = append(out[d], r.Path())
				}
			}
		}
	}
	return out, nil
}
