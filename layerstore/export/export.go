// Package export writes images as archives other tools read: an OCI image
// layout directory, an oci-archive (a tar of one), or a docker-archive (what
// docker save writes; docker 25+ style, which also holds an OCI layout).
//
// It takes images as layerstore.ImageSource values whose layers are
// uncompressed tars, as Store.ImageSource makes them (a registry push reads
// the same source), and touches nothing of the store itself. Configs are
// written verbatim, so an image keeps its ID. Layers are written
// uncompressed (digest = diffID, verified while streaming) unless
// Options.Compression asks for gzip or zstd (OCI formats only); manifests are
// made anew, since a compressed blob's digest depends on the compressor.
//
// A layout directory is written blob by blob (temporary file, then rename)
// and index.json last, so an interrupted export leaves no index naming
// missing blobs. Archives are streamed; a failure leaves a truncated tar that
// no reader accepts.
package export

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
)

// Options tune an export.
type Options struct {
	// Compression of layer blobs in OCI formats: "none" (default), "gzip" or "zstd".
	Compression string
	// TmpDir holds compressed layers before they go into an archive. Default os.TempDir().
	TmpDir string
	// Progress, if set, is told of each layer as it is written (Layer counts
	// the layers of all images in order; Done and Total are uncompressed
	// bytes; Skipped when the blob is already in the output).
	Progress func(layerstore.Progress)
}

// Formats.
const (
	FormatOCILayout     = "oci-layout"
	FormatOCIArchive    = "oci-archive"
	FormatDockerArchive = "docker-archive"
)

// sink receives blobs: a layout directory or a tar stream.
type sink interface {
	has(d digest.Digest) bool
	// put writes size bytes of r as the blob d, checking the digest.
	put(d digest.Digest, size int64, r io.Reader) error
	file(name string, data []byte) error
}

// Write writes imgs in format to w (archives) or to the directory dir
// (oci-layout; w is unused).
func Write(format string, w io.Writer, dir string, imgs []*layerstore.ImageSource, opt Options) error {
	if opt.Compression == "" {
		opt.Compression = "none"
	}
	switch opt.Compression {
	case "none", "gzip", "zstd":
	default:
		return fmt.Errorf("compression %q (want none, gzip or zstd): %w", opt.Compression, layerstore.ErrInvalid)
	}
	if format == FormatDockerArchive && opt.Compression != "none" {
		return fmt.Errorf("docker-archive layers are uncompressed: %w", layerstore.ErrInvalid)
	}
	switch format {
	case FormatOCILayout:
		if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
			return err
		}
		return writeAll(&dirSink{dir: dir}, format, imgs, opt)
	case FormatOCIArchive, FormatDockerArchive:
		ts := &tarSink{tw: tar.NewWriter(w), seen: map[string]bool{}}
		if err := writeAll(ts, format, imgs, opt); err != nil {
			return err
		}
		return ts.tw.Close()
	}
	return fmt.Errorf("format %q (want oci-layout, oci-archive or docker-archive): %w", format, layerstore.ErrInvalid)
}

func blobName(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

func writeAll(s sink, format string, imgs []*layerstore.ImageSource, opt Options) error {
	if err := s.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	var index ocispec.Index
	index.SchemaVersion = 2
	index.MediaType = ocispec.MediaTypeImageIndex
	type dockerEntry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var dm []dockerEntry
	nLayers := 0
	for _, img := range imgs {
		cfgD := digest.FromBytes(img.ConfigRaw)
		if !s.has(cfgD) {
			if err := s.put(cfgD, int64(len(img.ConfigRaw)), strings.NewReader(string(img.ConfigRaw))); err != nil {
				return err
			}
		}
		man := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfgD, Size: int64(len(img.ConfigRaw))},
		}
		de := dockerEntry{Config: blobName(cfgD), RepoTags: img.Names}
		for _, l := range img.Layers {
			var read *countingLayer
			if opt.Progress != nil {
				read = &countingLayer{i: nLayers, l: l, report: opt.Progress}
				l.Open = read.open
			}
			nLayers++
			desc, err := putLayer(s, l, opt)
			if err != nil {
				return fmt.Errorf("layer %s: %w", l.DiffID, err)
			}
			if read != nil {
				opt.Progress(layerstore.Progress{Layer: read.i, Digest: l.DiffID, Done: read.n, Total: l.Size, Skipped: !read.opened, Finished: true})
			}
			man.Layers = append(man.Layers, desc)
			de.Layers = append(de.Layers, blobName(desc.Digest))
		}
		manRaw, err := json.Marshal(man)
		if err != nil {
			return err
		}
		manD := digest.FromBytes(manRaw)
		if !s.has(manD) {
			if err := s.put(manD, int64(len(manRaw)), strings.NewReader(string(manRaw))); err != nil {
				return err
			}
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: manD, Size: int64(len(manRaw))}
		if len(img.Names) == 0 {
			index.Manifests = append(index.Manifests, desc)
		}
		for _, n := range img.Names {
			d := desc
			d.Annotations = map[string]string{
				ocispec.AnnotationRefName:  n,
				"io.containerd.image.name": n,
			}
			index.Manifests = append(index.Manifests, d)
		}
		dm = append(dm, de)
	}
	if format == FormatDockerArchive {
		b, err := json.Marshal(dm)
		if err != nil {
			return err
		}
		if err := s.file("manifest.json", b); err != nil {
			return err
		}
	}
	b, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return s.file("index.json", b)
}

// putLayer writes one layer blob, compressed as asked, and returns its descriptor.
func putLayer(s sink, l layerstore.LayerBlob, opt Options) (ocispec.Descriptor, error) {
	if l.Digest != "" && l.Digest != l.DiffID {
		return ocispec.Descriptor{}, fmt.Errorf("blob %s is not the uncompressed tar: %w", l.Digest, layerstore.ErrInvalid)
	}
	if opt.Compression == "none" {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l.DiffID, Size: l.Size}
		if s.has(l.DiffID) {
			return desc, nil
		}
		rc, err := l.Open()
		if err != nil {
			return desc, err
		}
		defer rc.Close()
		return desc, s.put(l.DiffID, l.Size, rc)
	}
	// Compress to a temporary file: the digest and size must be known
	// before a tar header or a descriptor can name the blob.
	tmp, err := os.CreateTemp(opt.TmpDir, "strata-export-*")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	rc, err := l.Open()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer rc.Close()
	h := sha256.New()
	out := io.MultiWriter(tmp, h)
	var zw io.WriteCloser
	mt := ocispec.MediaTypeImageLayerGzip
	if opt.Compression == "gzip" {
		zw = gzip.NewWriter(out)
	} else {
		mt = ocispec.MediaTypeImageLayerZstd
		if zw, err = zstd.NewWriter(out); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	diff := sha256.New()
	n, err := io.Copy(zw, io.TeeReader(rc, diff))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if got := digest.NewDigest(digest.SHA256, diff); got != l.DiffID || n != l.Size {
		return ocispec.Descriptor{}, fmt.Errorf("stream hashes to %s (%d bytes), want %s (%d bytes): %w", got, n, l.DiffID, l.Size, layerstore.ErrDigestMismatch)
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := digest.NewDigest(digest.SHA256, h)
	desc := ocispec.Descriptor{MediaType: mt, Digest: d, Size: size}
	if s.has(d) {
		return desc, nil
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return desc, err
	}
	return desc, s.put(d, size, tmp)
}

// verifying hashes what it reads and fails at EOF on a mismatch.
type verifying struct {
	r    io.Reader
	h    hash.Hash
	d    digest.Digest
	n    int64
	size int64
}

func (v *verifying) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if got := digest.NewDigest(v.d.Algorithm(), v.h); got != v.d || v.n != v.size {
			return n, fmt.Errorf("blob %s: stream hashes to %s (%d bytes, want %d): %w", v.d, got, v.n, v.size, layerstore.ErrDigestMismatch)
		}
	}
	return n, err
}

func verify(d digest.Digest, size int64, r io.Reader) io.Reader {
	return &verifying{r: io.LimitReader(r, size+1), h: sha256.New(), d: d, size: size}
}

type dirSink struct{ dir string }

func (s *dirSink) has(d digest.Digest) bool {
	fi, err := os.Stat(filepath.Join(s.dir, blobName(d)))
	return err == nil && fi.Mode().IsRegular()
}

func (s *dirSink) put(d digest.Digest, size int64, r io.Reader) error {
	final := filepath.Join(s.dir, blobName(d))
	f, err := os.CreateTemp(filepath.Dir(final), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, verify(d, size, r))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), final)
}

func (s *dirSink) file(name string, data []byte) error {
	p := filepath.Join(s.dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

type tarSink struct {
	tw   *tar.Writer
	seen map[string]bool
}

var epoch = time.Unix(0, 0)

func (s *tarSink) has(d digest.Digest) bool { return s.seen[blobName(d)] }

func (s *tarSink) dirs(name string) error {
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		dir := strings.Join(parts[:i], "/") + "/"
		if s.seen[dir] {
			continue
		}
		s.seen[dir] = true
		if err := s.tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	return nil
}

func (s *tarSink) put(d digest.Digest, size int64, r io.Reader) error {
	name := blobName(d)
	if err := s.dirs(name); err != nil {
		return err
	}
	s.seen[name] = true
	if err := s.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: epoch}); err != nil {
		return err
	}
	n, err := io.Copy(s.tw, verify(d, size, r))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("blob %s: %d bytes, want %d: %w", d, n, size, layerstore.ErrDigestMismatch)
	}
	return nil
}

func (s *tarSink) file(name string, data []byte) error {
	if err := s.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := s.tw.Write(data)
	return err
}

// countingLayer reports the bytes read from a layer's Open as progress.
type countingLayer struct {
	i      int
	l      layerstore.LayerBlob
	report func(layerstore.Progress)
	opened bool
	n      int64
}

func (c *countingLayer) open() (io.ReadCloser, error) {
	rc, err := c.l.Open()
	if err != nil {
		return nil, err
	}
	c.opened = true
	return &countingReader{rc: rc, c: c}, nil
}

type countingReader struct {
	rc io.ReadCloser
	c  *countingLayer
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 {
		r.c.n += int64(n)
		r.c.report(layerstore.Progress{Layer: r.c.i, Digest: r.c.l.DiffID, Done: r.c.n, Total: r.c.l.Size})
	}
	return n, err
}

func (r *countingReader) Close() error { return r.rc.Close() }
