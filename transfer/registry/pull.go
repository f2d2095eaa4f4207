package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
)

// Limits on what a registry may send before it is parsed. Docker's and
// distribution's manifest limit is 4 MiB.
const (
	maxManifestBytes = 4 << 20
	maxConfigBytes   = 32 << 20
)

// Docker's media types, beside the OCI ones of image-spec.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Sig   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// Remote is an image found in a registry, ready for the store's AddImage:
// Source's layers download when the store opens them.
type Remote struct {
	Ref Reference
	// Digest is what the reference resolved to: the manifest, or the
	// index or manifest list the manifest was picked from. It is the
	// image's repo digest (Source.RepoDigests).
	Digest   digest.Digest
	Platform ocispec.Platform
	Source   *layerstore.ImageSource

	c    *Client
	ctx  context.Context
	repo *remote.Repository
	sem  chan struct{} // bounds the downloads at once
}

// OpenLayer opens layer i's blob (of Source.Layers) from byte off, as
// that layer's Open does from its start: for the rest of a download an
// earlier pull began. It waits while Options.Concurrency downloads run.
func (r *Remote) OpenLayer(i int, off int64) (io.ReadCloser, error) {
	select {
	case r.sem <- struct{}{}:
	case <-r.ctx.Done():
		return nil, r.ctx.Err()
	}
	// The first Read connects, with the retries a broken connection gets.
	return &blobReader{ctx: r.ctx, repo: r.repo, desc: r.Source.Manifest.Layers[i], off: off, retries: r.c.opts.Retries,
		count: &r.c.stats.BlobBytesIn, release: func() { <-r.sem }}, nil
}

// Stats counts what a client moved.
type Stats struct {
	BlobBytesIn  atomic.Int64 // layer and config bytes received
	BlobBytesOut atomic.Int64 // layer and config bytes sent
}

// Stats is the client's running totals.
func (c *Client) Stats() *Stats { return &c.stats }

// Get resolves ref in its registry: the manifest (for an index or a
// manifest list, the one for platform), verified against its digest, and
// the config, verified against the manifest. Layers the store's has
// (have says so by diffID) get a LayerBlob without a blob digest, so
// AddImage keeps them without opening them; the others open a download
// that resumes on a broken connection. No more than Options.Concurrency
// downloads run at once.
func (c *Client) Get(ctx context.Context, ref Reference, platform ocispec.Platform, have func(diffID digest.Digest) bool) (*Remote, error) {
	repo, err := c.repository(ctx, ref)
	if err != nil {
		return nil, err
	}
	desc, raw, err := fetchManifest(ctx, repo, ref, ref.Ref())
	if err != nil {
		return nil, err
	}
	r := &Remote{Ref: ref, Digest: desc.Digest, c: c, ctx: ctx, repo: repo, sem: make(chan struct{}, c.opts.Concurrency)}
	var man ocispec.Manifest
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("manifest list %s of %s: not JSON: %w: %w", desc.Digest, ref.Familiar(), err, layerstore.ErrInvalid)
		}
		child, err := pick(idx, platform)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref.Familiar(), err)
		}
		if desc, raw, err = fetchManifest(ctx, repo, ref, string(child.Digest)); err != nil {
			return nil, err
		}
		if desc.Digest != child.Digest {
			return nil, fmt.Errorf("manifest %s: registry sent %s: %w", child.Digest, desc.Digest, layerstore.ErrDigestMismatch)
		}
		if desc.MediaType != ocispec.MediaTypeImageManifest && desc.MediaType != MediaTypeDockerManifest {
			return nil, fmt.Errorf("manifest %s of %s: media type %q in a manifest list: %w", desc.Digest, ref.Familiar(), desc.MediaType, layerstore.ErrInvalid)
		}
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
	case mediaTypeDockerSchema1, mediaTypeDockerSchema1Sig:
		return nil, fmt.Errorf("%s: docker image format v1 (schema 1 manifest) is not supported; push it again with a current docker: %w", ref.Familiar(), layerstore.ErrInvalid)
	default:
		return nil, fmt.Errorf("%s: manifest media type %q is not an image: %w", ref.Familiar(), desc.MediaType, layerstore.ErrInvalid)
	}
	if err := json.Unmarshal(raw, &man); err != nil {
		return nil, fmt.Errorf("manifest %s of %s: not JSON: %w: %w", desc.Digest, ref.Familiar(), err, layerstore.ErrInvalid)
	}
	if man.Config.Digest.Validate() != nil || man.Config.Size < 0 {
		return nil, fmt.Errorf("manifest %s of %s: no valid config descriptor: %w", desc.Digest, ref.Familiar(), layerstore.ErrInvalid)
	}
	if man.Config.Size > maxConfigBytes {
		return nil, fmt.Errorf("config %s of %s: %d bytes, more than the %d MiB limit: %w", man.Config.Digest, ref.Familiar(), man.Config.Size, maxConfigBytes>>20, layerstore.ErrInvalid)
	}
	cfgRaw, err := c.fetchSmall(ctx, repo, man.Config)
	if err != nil {
		return nil, explain(fmt.Sprintf("config %s of %s", man.Config.Digest, ref.Familiar()), err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return nil, fmt.Errorf("config %s of %s: not JSON: %w: %w", man.Config.Digest, ref.Familiar(), err, layerstore.ErrInvalid)
	}
	if len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		return nil, fmt.Errorf("%s: config names %d layers, the manifest %d: %w", ref.Familiar(), len(cfg.RootFS.DiffIDs), len(man.Layers), layerstore.ErrInvalid)
	}
	r.Platform = ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	if !matches(platform, r.Platform) {
		return nil, fmt.Errorf("image %s was found but does not match the specified platform: wanted %s, actual: %s: %w", ref.Familiar(), platformString(platform), platformString(r.Platform), layerstore.ErrNotFound)
	}
	src := &layerstore.ImageSource{
		ManifestRaw:    raw,
		ManifestDigest: desc.Digest,
		Manifest:       man,
		ConfigRaw:      cfgRaw,
		ConfigDigest:   man.Config.Digest,
		Config:         cfg,
		RepoDigests:    []string{ref.RepoDigest(r.Digest)},
	}
	if n := ref.Name(); n != "" {
		src.Names = []string{n}
	}
	r.Source = src
	for i, l := range man.Layers {
		if l.Digest.Validate() != nil || l.Size < 0 {
			return nil, fmt.Errorf("manifest %s of %s: layer %d has no valid descriptor: %w", desc.Digest, ref.Familiar(), i, layerstore.ErrInvalid)
		}
		blob := layerstore.LayerBlob{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, DiffID: cfg.RootFS.DiffIDs[i]}
		if have != nil && have(blob.DiffID) {
			// The config is verified, and it names this layer by the
			// digest of its content: the stored layer is it.
			blob.Digest, blob.Size = "", -1
		}
		blob.Open = func() (io.ReadCloser, error) { return r.OpenLayer(i, 0) }
		src.Layers = append(src.Layers, blob)
	}
	return r, nil
}

// fetchManifest fetches a manifest by tag or digest and checks it hashes to
// the digest asked for, or the one the registry says.
func fetchManifest(ctx context.Context, repo *remote.Repository, ref Reference, what string) (ocispec.Descriptor, []byte, error) {
	name := ref.Repo() + ":" + what
	if _, err := digest.Parse(what); err == nil {
		name = ref.Repo() + "@" + what
	}
	desc, rc, err := repo.Manifests().FetchReference(ctx, what)
	if err != nil {
		if errors.Is(err, errdef.ErrSizeExceedsLimit) {
			return desc, nil, fmt.Errorf("manifest for %s: more than the %d MiB a manifest may have: %w: %w", name, maxManifestBytes>>20, err, layerstore.ErrInvalid)
		}
		if errors.Is(err, errdef.ErrNotFound) {
			return desc, nil, fmt.Errorf("manifest for %s not found: manifest unknown: %w", name, layerstore.ErrNotFound)
		}
		return desc, nil, explain("manifest for "+name, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
	if err != nil {
		return desc, nil, fmt.Errorf("manifest for %s: %w", name, err)
	}
	if len(raw) > maxManifestBytes {
		return desc, nil, fmt.Errorf("manifest for %s: more than the %d MiB a manifest may have: %w", name, maxManifestBytes>>20, layerstore.ErrInvalid)
	}
	got := digest.FromBytes(raw)
	want := desc.Digest
	if d, err := digest.Parse(what); err == nil {
		want = d
	}
	if want != "" && got != want {
		return desc, nil, fmt.Errorf("manifest for %s: content hashes to %s, registry says %s: %w", name, got, want, layerstore.ErrDigestMismatch)
	}
	desc.Digest, desc.Size = got, int64(len(raw))
	if desc.MediaType == "" || desc.MediaType == "application/json" || desc.MediaType == "text/plain" {
		// Some registries do not say; the manifest does.
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return desc, nil, fmt.Errorf("manifest for %s: not JSON: %w: %w", name, err, layerstore.ErrInvalid)
		}
		desc.MediaType = probe.MediaType
	}
	return desc, raw, nil
}

// fetchSmall reads a blob up to its declared size, resuming as a layer
// does, and checks its digest.
func (c *Client) fetchSmall(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor) ([]byte, error) {
	rc := &blobReader{ctx: ctx, repo: repo, desc: desc, retries: c.opts.Retries, count: &c.stats.BlobBytesIn}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) != desc.Size {
		return nil, fmt.Errorf("%d bytes, manifest says %d: %w", len(raw), desc.Size, layerstore.ErrSizeMismatch)
	}
	if got := digest.FromBytes(raw); got != desc.Digest {
		return nil, fmt.Errorf("content hashes to %s: %w", got, layerstore.ErrDigestMismatch)
	}
	return raw, nil
}

// pick chooses the manifest for platform in an index, as docker does: the
// first entry of that OS and architecture (and variant, if asked).
func pick(idx ocispec.Index, platform ocispec.Platform) (ocispec.Descriptor, error) {
	for _, m := range idx.Manifests {
		if m.Platform != nil && matches(platform, *m.Platform) {
			if m.Digest.Validate() != nil {
				return m, fmt.Errorf("manifest list entry for %s: digest %q: %w", platformString(platform), m.Digest, layerstore.ErrInvalid)
			}
			return m, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("no matching manifest for %s in the manifest list entries: %w", platformString(platform), layerstore.ErrNotFound)
}

// Tags lists ref's repository's tags, for pull -a.
func (c *Client) Tags(ctx context.Context, ref Reference) ([]string, error) {
	repo, err := c.repository(ctx, ref)
	if err != nil {
		return nil, err
	}
	var out []string
	err = repo.Tags(ctx, "", func(tags []string) error {
		out = append(out, tags...)
		return nil
	})
	return out, explain("tags of "+ref.Repo(), err)
}
