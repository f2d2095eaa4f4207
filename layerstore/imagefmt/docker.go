package imagefmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
)

// dockerManifestFile is the file docker save writes to list its images.
const dockerManifestFile = "manifest.json"

// dockerEntry is one element of a docker-archive's manifest.json. Parent and
// LayerSources (foreign layers) are not used.
type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// readDocker reads the images of a docker-archive (see the package doc for
// how it synthesizes their manifests).
func readDocker(src source) ([]layerstore.ImageSource, error) {
	raw, err := readMember(src, dockerManifestFile)
	if err != nil {
		return nil, err
	}
	var entries []dockerEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("%w %s: %w", layerstore.ErrInvalid, dockerManifestFile, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w %s: lists no images", layerstore.ErrInvalid, dockerManifestFile)
	}
	var images []layerstore.ImageSource
	for i, e := range entries {
		img, err := readDockerImage(src, e)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", dockerManifestFile, i, err)
		}
		images = mergeImage(images, img)
	}
	return images, nil
}

func readDockerImage(src source, e dockerEntry) (layerstore.ImageSource, error) {
	var img layerstore.ImageSource
	for _, t := range e.RepoTags {
		n, err := layerstore.NormalizeRef(t)
		if err != nil {
			return img, fmt.Errorf("RepoTags: %w", err)
		}
		if !contains(img.Names, n) {
			img.Names = append(img.Names, n)
		}
	}
	cname, err := cleanMember(e.Config)
	if err != nil {
		return img, fmt.Errorf("Config: %w", err)
	}
	cfg, err := readMember(src, cname)
	if err != nil {
		return img, fmt.Errorf("config: %w", err)
	}
	img.ConfigRaw = cfg
	img.ConfigDigest = digest.FromBytes(cfg)
	if named, ok := digestFromName(cname); ok && named.Algorithm().FromBytes(cfg) != named {
		return img, fmt.Errorf("config %s: %w: content hashes to %s", cname, layerstore.ErrDigestMismatch, img.ConfigDigest)
	}
	if img.Config, err = parseConfig(cfg, img.ConfigDigest, len(e.Layers)); err != nil {
		return img, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    img.ConfigDigest,
			Size:      int64(len(cfg)),
		},
		Layers: []ocispec.Descriptor{},
	}
	for i, p := range e.Layers {
		diffID := img.Config.RootFS.DiffIDs[i]
		l, err := dockerLayer(src, p, diffID)
		if err != nil {
			return img, fmt.Errorf("Layers[%d]: %w", i, err)
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
		img.Layers = append(img.Layers, l)
	}
	if img.ManifestRaw, err = json.Marshal(m); err != nil {
		return img, err
	}
	img.Manifest = m
	img.ManifestDigest = digest.FromBytes(img.ManifestRaw)
	return img, nil
}

// dockerLayer describes the layer member p, whose diffID the config gives.
// Its media type comes from its magic bytes. Its digest is diffID when it is
// an uncompressed tar (the digest of a tar is its diffID); for a compressed
// member, the digest its name carries (blobs/sha256/<hex>) or
// else one computed by reading it.
func dockerLayer(src source, p string, diffID digest.Digest) (layerstore.LayerBlob, error) {
	name, err := cleanMember(p)
	if err != nil {
		return layerstore.LayerBlob{}, err
	}
	rc, size, err := src.open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return layerstore.LayerBlob{}, fmt.Errorf("layer %s (diffID %s): %w", name, diffID, layerstore.ErrMissingBlob)
	}
	if err != nil {
		return layerstore.LayerBlob{}, err
	}
	defer rc.Close()
	var magic [6]byte
	n, err := io.ReadFull(rc, magic[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return layerstore.LayerBlob{}, fmt.Errorf("layer %s: %w", name, err)
	}
	l := layerstore.LayerBlob{Size: size, DiffID: diffID}
	switch c := sniff(magic[:n]); c {
	case CompressionGzip:
		l.MediaType = ocispec.MediaTypeImageLayerGzip
	case CompressionZstd:
		l.MediaType = ocispec.MediaTypeImageLayerZstd
	case CompressionNone:
		l.MediaType = ocispec.MediaTypeImageLayer
		l.Digest = diffID
	default:
		return layerstore.LayerBlob{}, fmt.Errorf("%w layer %s: unsupported compression %s", layerstore.ErrInvalid, name, c)
	}
	if l.Digest == "" {
		if d, ok := digestFromName(name); ok {
			l.Digest = d
		} else {
			r := io.MultiReader(bytes.NewReader(magic[:n]), rc)
			if l.Digest, err = digest.FromReader(r); err != nil {
				return layerstore.LayerBlob{}, fmt.Errorf("layer %s: %w", name, err)
			}
		}
	}
	l.Open = openBlob(src, name, l.Digest)
	return l, nil
}

// digestFromName returns the sha256 digest a content-addressed member name
// carries: blobs/sha256/<hex> (docker 25+) or <hex>.json (a config, as old
// docker and skopeo name it). <hex>.tar is not trusted: skopeo names an
// uncompressed layer by its diffID, which is not the digest of a compressed one.
func digestFromName(name string) (digest.Digest, bool) {
	base := path.Base(name)
	switch {
	case path.Dir(name) == "blobs/sha256":
	case path.Dir(name) == "." && path.Ext(base) == ".json":
		base = strings.TrimSuffix(base, ".json")
	default:
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, base)
	return d, d.Validate() == nil
}
