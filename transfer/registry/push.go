package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
	"golang.org/x/sys/unix"
	"oras.land/oras-go/v2/registry/remote"
)

// Event is one line of progress, as docker's JSON messages carry it: a
// layer's short ID, its status, and bytes done of total while it moves.
type Event struct {
	ID      string
	Status  string
	Current int64
	Total   int64 // 0 when there is no bar to draw
}

// Compression of pushed layers.
const (
	Gzip = "gzip"
	Zstd = "zstd"
)

// PushOptions tune Push.
type PushOptions struct {
	// Compression is Gzip (the default; docker's media types) or Zstd
	// (OCI media types, as docker and buildah write zstd).
	Compression string
	// Progress, if set, receives events, serialized.
	Progress func(Event)
	// Known lists blobs the store knows hold the layer diffID, with their
	// media types: a push offers them before compressing the layer again.
	Known func(diffID digest.Digest) map[digest.Digest]string
	// MountFrom lists repositories of the same registry (paths inside it)
	// that may hold the layer diffID, to mount it from.
	MountFrom func(diffID digest.Digest) []string
	// Pushed, if set, is told of each layer's blob in the registry.
	Pushed func(diffID, blob digest.Digest, mediaType string)
	// TmpDir holds a layer, in a file without a name, while it is
	// compressed and hashed, before the upload that must name its digest;
	// "" is os.TempDir().
	TmpDir string
}

// PushResult is what a push made.
type PushResult struct {
	Digest digest.Digest // of the manifest
	Size   int64         // of the manifest
}

// errNoMount stops oras's mount from uploading when the registry declined
// to mount: the caller decides what to upload.
var errNoMount = errors.New("not mounted")

// Push writes src to ref's repository: layers the registry has are skipped
// after a HEAD, layers another repository of it has are mounted, the rest
// uploaded, Options.Concurrency at once; then the config and, last, the
// manifest under ref's tag.
func (c *Client) Push(ctx context.Context, ref Reference, src *layerstore.ImageSource, opt PushOptions) (PushResult, error) {
	if ref.Tag == "" {
		return PushResult{}, fmt.Errorf("push %s: a tag is needed, not a digest: %w", ref.Familiar(), layerstore.ErrInvalid)
	}
	comp := opt.Compression
	if comp == "" {
		comp = Gzip
	}
	if comp != Gzip && comp != Zstd {
		return PushResult{}, fmt.Errorf("compression %q: want gzip or zstd: %w", comp, layerstore.ErrInvalid)
	}
	repo, err := c.repository(ctx, ref)
	if err != nil {
		return PushResult{}, err
	}
	var pmu sync.Mutex
	report := func(e Event) {
		if opt.Progress != nil {
			pmu.Lock()
			opt.Progress(e)
			pmu.Unlock()
		}
	}
	for _, l := range src.Layers {
		report(Event{ID: shortID(l.DiffID), Status: "Preparing"})
	}
	descs := make([]ocispec.Descriptor, len(src.Layers))
	errs := make([]error, len(src.Layers))
	sem := make(chan struct{}, c.opts.Concurrency)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	seen := map[digest.Digest]int{}
	for i, l := range src.Layers {
		if _, dup := seen[l.DiffID]; dup {
			// The same layer twice (an image that adds and removes
			// nothing): one upload serves both.
			continue
		}
		seen[l.DiffID] = i
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			default:
				// As docker says of a layer queued behind the others.
				report(Event{ID: shortID(l.DiffID), Status: "Waiting"})
				select {
				case sem <- struct{}{}:
				case <-lctx.Done():
					errs[i] = lctx.Err()
					return
				}
			}
			defer func() { <-sem }()
			d, err := c.pushLayer(lctx, repo, l, comp, opt, report)
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			descs[i] = d
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return PushResult{}, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return PushResult{}, err
	}
	for i, l := range src.Layers {
		if descs[i].Digest == "" {
			descs[i] = descs[seen[l.DiffID]]
		}
	}
	cfgType, manType := MediaTypeDockerConfig, MediaTypeDockerManifest
	if comp == Zstd {
		cfgType, manType = ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageManifest
	}
	cfg := ocispec.Descriptor{MediaType: cfgType, Digest: digest.FromBytes(src.ConfigRaw), Size: int64(len(src.ConfigRaw))}
	if ok, err := repo.Blobs().Exists(ctx, cfg); err != nil {
		return PushResult{}, explain("config of "+ref.Familiar(), err)
	} else if !ok {
		if err := repo.Blobs().Push(ctx, cfg, strings.NewReader(string(src.ConfigRaw))); err != nil {
			return PushResult{}, explain("config of "+ref.Familiar(), err)
		}
		c.stats.BlobBytesOut.Add(cfg.Size)
	}
	man := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: manType, Config: cfg, Layers: descs}
	raw, err := json.MarshalIndent(man, "", "   ")
	if err != nil {
		return PushResult{}, err
	}
	md := ocispec.Descriptor{MediaType: manType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := repo.Manifests().PushReference(ctx, md, strings.NewReader(string(raw)), ref.Tag); err != nil {
		return PushResult{}, explain("manifest of "+ref.Familiar(), err)
	}
	return PushResult{Digest: md.Digest, Size: md.Size}, nil
}

// shortID is docker's 12-hex-digit form of a digest.
func shortID(d digest.Digest) string {
	h := d.Encoded()
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

func wantType(comp string, mt string) bool {
	if comp == Zstd {
		return strings.HasSuffix(mt, "+zstd")
	}
	return mt == MediaTypeDockerLayer || mt == ocispec.MediaTypeImageLayerGzip
}

// pushLayer gets one layer into the repository and returns its descriptor.
func (c *Client) pushLayer(ctx context.Context, repo *remote.Repository, l layerstore.LayerBlob, comp string, opt PushOptions, report func(Event)) (ocispec.Descriptor, error) {
	id := shortID(l.DiffID)
	mt := MediaTypeDockerLayer
	if comp == Zstd {
		mt = ocispec.MediaTypeImageLayerZstd
	}
	var mountFrom []string
	if opt.MountFrom != nil {
		mountFrom = opt.MountFrom(l.DiffID)
	}
	done := func(d ocispec.Descriptor) ocispec.Descriptor {
		if opt.Pushed != nil {
			opt.Pushed(l.DiffID, d.Digest, d.MediaType)
		}
		return d
	}
	// offer tries a blob the registry may have: here, or in a sibling.
	offer := func(d digest.Digest, mediaType string) (ocispec.Descriptor, bool, error) {
		desc, err := repo.Blobs().Resolve(ctx, string(d))
		if err == nil {
			desc.MediaType = mediaType
			report(Event{ID: id, Status: "Layer already exists"})
			return desc, true, nil
		}
		for _, from := range mountFrom {
			if from == repo.Reference.Repository {
				continue
			}
			err := repo.Mount(ctx, ocispec.Descriptor{MediaType: mediaType, Digest: d}, from, func() (io.ReadCloser, error) { return nil, errNoMount })
			if err == nil {
				desc, err := repo.Blobs().Resolve(ctx, string(d))
				if err != nil {
					return desc, false, explain("layer "+id, err)
				}
				desc.MediaType = mediaType
				report(Event{ID: id, Status: "Mounted from " + from})
				return desc, true, nil
			}
		}
		return ocispec.Descriptor{}, false, nil
	}
	if opt.Known != nil {
		for d, t := range opt.Known(l.DiffID) {
			if !wantType(comp, t) {
				continue
			}
			if desc, ok, err := offer(d, t); err != nil || ok {
				return done(desc), err
			}
		}
	}
	f, desc, err := compressLayer(l, comp, opt.TmpDir)
	if err != nil {
		return desc, fmt.Errorf("layer %s: %w", l.DiffID, err)
	}
	defer f.Close()
	desc.MediaType = mt
	if d, ok, err := offer(desc.Digest, mt); err != nil || ok {
		return done(d), err
	}
	var sent int64
	pr := &progressReader{r: f, fn: func(n int64) {
		c.stats.BlobBytesOut.Add(n - sent)
		sent = n
		report(Event{ID: id, Status: "Pushing", Current: n, Total: desc.Size})
	}}
	if desc.Size > c.opts.ChunkSize {
		err = c.uploadChunked(ctx, repo, desc, f, pr.fn)
	} else {
		err = repo.Blobs().Push(ctx, desc, pr)
	}
	if err != nil {
		return desc, explain("layer "+id, err)
	}
	report(Event{ID: id, Status: "Pushed"})
	return done(desc), nil
}

// compressLayer writes the layer's tar, compressed, to a temporary file
// and returns it rewound with its descriptor.
func compressLayer(l layerstore.LayerBlob, comp, dir string) (*os.File, ocispec.Descriptor, error) {
	rc, err := l.Open()
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	defer rc.Close()
	f, err := anonymousFile(dir)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	fail := func(err error) (*os.File, ocispec.Descriptor, error) {
		f.Close()
		return nil, ocispec.Descriptor{}, err
	}
	dg := digest.SHA256.Digester()
	cw := &countWriter{w: io.MultiWriter(f, dg.Hash())}
	var zw io.WriteCloser
	if comp == Zstd {
		if zw, err = zstd.NewWriter(cw); err != nil {
			return fail(err)
		}
	} else {
		zw = gzip.NewWriter(cw)
	}
	if _, err := io.Copy(zw, rc); err != nil {
		return fail(err)
	}
	if err := zw.Close(); err != nil {
		return fail(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return f, ocispec.Descriptor{Digest: dg.Digest(), Size: cw.n}, nil
}

// anonymousFile is a file in dir without a name (O_TMPFILE, else created
// and unlinked at once): it is gone when closed, or when the process is
// killed, and no check of the store ever sees it.
func anonymousFile(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "(push)")), nil
	}
	f, err := os.CreateTemp(dir, "push-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// progressReader reports the running total of what was read through it.
type progressReader struct {
	r    io.Reader
	n    int64
	fn   func(total int64)
	last int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n-p.last >= 512<<10 || err == io.EOF {
		p.fn(p.n)
		p.last = p.n
	}
	return n, err
}
