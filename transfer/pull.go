package transfer

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/transfer/registry"
)

// PullOptions tune Pull.
type PullOptions struct {
	// Platform picks the manifest of an index or manifest list; the zero
	// value is this machine's.
	Platform ocispec.Platform
	// Progress, if set, receives docker's per-layer status lines
	// ("Pulling fs layer", "Downloading", "Pull complete", "Already
	// exists"), serialized.
	Progress func(registry.Event)
}

// PullResult is what a pull stored.
type PullResult struct {
	Image    layerstore.Image
	Ref      registry.Reference
	Digest   digest.Digest // the repo digest: manifest, or index it came from
	UpToDate bool          // the name already named this image
}

// Pull stores the image ref names from its registry through the same
// AddImage a load uses: all of it or nothing. Layers the store has (by
// diffID) are not downloaded. The image is tagged with ref's name (none
// for a pull by digest) and records ref's repo digest. A pull that fails
// keeps its downloads for the next one to resume, all but that of a layer
// found wrong (digest, size, not a tar, refused); a layer over a limit of
// the store (layerstore.ErrOverLimit) is not wrong, and its download stays.
func Pull(ctx context.Context, s *layerstore.Store, c *registry.Client, ref registry.Reference, opt PullOptions) (PullResult, error) {
	if opt.Platform.OS == "" {
		opt.Platform = registry.DefaultPlatform()
	}
	have := func(d digest.Digest) bool {
		_, err := s.Layer(d)
		return err == nil
	}
	remote, err := c.Get(ctx, ref, opt.Platform, have)
	if err != nil {
		return PullResult{}, err
	}
	src := remote.Source
	res := PullResult{Ref: ref, Digest: remote.Digest}
	if old, err := s.ResolveImage(string(src.ConfigDigest)); err == nil {
		if n := ref.Name(); n == "" {
			res.UpToDate = true
		} else if cur, err := s.ResolveImage(n); err == nil && cur.ID == old.ID {
			res.UpToDate = true
		}
	}
	report := opt.Progress
	if report == nil {
		report = func(registry.Event) {}
	}
	ids := make([]string, len(src.Layers))
	status := make([]string, len(src.Layers))
	for i, l := range src.Layers {
		d := remote.Source.Manifest.Layers[i].Digest
		ids[i] = d.Encoded()[:12]
		if l.Digest == "" {
			status[i] = "Already exists"
		} else {
			status[i] = "Pulling fs layer"
		}
		report(registry.Event{ID: ids[i], Status: status[i]})
	}
	say := func(i int, st string, cur, total int64) {
		if st != status[i] || total > 0 {
			status[i] = st
			report(registry.Event{ID: ids[i], Status: st, Current: cur, Total: total})
		}
	}
	// arrived says once that layer i's blob is all here; its digest is
	// checked as the last of it passes.
	arrived := func(i int) {
		if status[i] == "Downloading" || status[i] == "Pulling fs layer" {
			say(i, "Verifying Checksum", 0, 0)
			say(i, "Download complete", 0, 0)
		}
	}
	rs := newResumeStats(len(src.Layers))
	for i, l := range src.Layers {
		if l.Digest != "" {
			src.Layers[i].Open = resumable(s, remote, i, rs)
		}
	}
	add := &layerstore.AddOptions{Progress: func(p layerstore.Progress) {
		i := p.Layer
		switch {
		case p.Skipped:
			say(i, "Already exists", 0, 0)
		case p.Finished:
			arrived(i)
			if p.Total > 0 {
				say(i, "Extracting", p.Total, p.Total)
			}
			say(i, "Pull complete", 0, 0)
		case p.Total > 0 && (p.Done >= p.Total || status[i] == "Extracting"):
			// (Progress comes from two goroutines: one may be an
			// older figure of Done than the last.)
			// A layer streams into the store: it is extracted as it
			// arrives, and what is left to extract once it is all
			// here is the few chunks between the two.
			arrived(i)
			say(i, "Extracting", p.Extracted, p.Total)
		default:
			say(i, "Downloading", p.Done, p.Total)
		}
	}}
	stored, err := s.AddImage(ctx, src, add)
	retried := make([]bool, len(src.Layers))
	for {
		// A layer found wrong: its download is of no use, and when it
		// began with what an earlier pull left, that part may be what was
		// wrong (a power loss can leave a download's last pages stale):
		// that layer once more from the start. The other layers'
		// downloads are kept, as docker keeps the layers that came whole:
		// nothing says they are wrong, and another image may share them.
		// Each layer is tried again once at most: two that a registry
		// keeps sending wrong would otherwise take turns being resumed
		// (what came of the one tried again is kept) for ever.
		i, ok := badLayer(err)
		if !ok {
			break
		}
		s.RemoveDownload(src.Layers[i].Digest)
		if !rs.resumed[i].Load() || retried[i] {
			break
		}
		retried[i] = true
		rs.reset()
		stored, err = s.AddImage(ctx, src, add)
	}
	if err == nil {
		removeDownloads(s, src)
	}
	if err != nil {
		// Only a layer's blob being read is the registry's: ErrCorrupt
		// from the store itself (an object vanished) is not.
		var le *layerstore.LayerError
		fromBlob := errors.As(err, &le) && le.Blob != ""
		if errors.Is(err, layerstore.ErrDigestMismatch) || errors.Is(err, layerstore.ErrSizeMismatch) {
			return res, fmt.Errorf("pull %s: the registry sent content that does not match its digest, nothing stored: %w", ref.Familiar(), err)
		}
		if fromBlob && errors.Is(err, layerstore.ErrCorrupt) {
			return res, fmt.Errorf("pull %s: the registry sent a layer that is not a valid compressed tar, nothing stored: %w", ref.Familiar(), err)
		}
		if errors.Is(err, layerstore.ErrOverLimit) {
			return res, fmt.Errorf("pull %s: over a limit of this store, nothing stored (the %d bytes downloaded are kept: a pull into a store that takes it resumes): %w",
				ref.Familiar(), rs.kept.Load(), err)
		}
		if errors.Is(err, layerstore.ErrInvalid) {
			return res, fmt.Errorf("pull %s: the image holds a layer strata refuses, nothing stored: %w", ref.Familiar(), err)
		}
		if n := rs.kept.Load(); n > 0 {
			return res, fmt.Errorf("pull %s: %w (the %d bytes that came are kept: pulling again resumes)", ref.Familiar(), err, n)
		}
		return res, fmt.Errorf("pull %s: %w", ref.Familiar(), err)
	}
	res.Image = stored
	// Remember which registry blob holds each downloaded layer, for a
	// push to offer it.
	for _, l := range src.Layers {
		if l.Digest != "" {
			if err := s.AddLayerBlob(l.DiffID, l.Digest, l.MediaType); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// badLayer says which downloaded layer an AddImage failure found wrong,
// or refused (a tar entry that leaves the layer, a tar that goes on past
// its end): its download is of no use to the next pull. A refusal by a
// limit of the store (ErrOverLimit) is not one: another store takes it.
func badLayer(err error) (int, bool) {
	var le *layerstore.LayerError
	if !errors.As(err, &le) || le.Blob == "" || errors.Is(err, layerstore.ErrOverLimit) {
		return 0, false
	}
	return le.Index, errors.Is(err, layerstore.ErrDigestMismatch) || errors.Is(err, layerstore.ErrSizeMismatch) ||
		errors.Is(err, layerstore.ErrCorrupt) || errors.Is(err, layerstore.ErrInvalid)
}

// removeDownloads drops the downloads of src's blobs: stored.
func removeDownloads(s *layerstore.Store, src *layerstore.ImageSource) {
	for _, l := range src.Layers {
		if l.Digest != "" {
			s.RemoveDownload(l.Digest)
		}
	}
}
