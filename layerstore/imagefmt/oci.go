package imagefmt

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
)

// annotationContainerdName is the full reference containerd and docker 25+
// record on an index.json entry (ref.name then holds only the tag).
const annotationContainerdName = "io.containerd.image.name"

// maxIndexDepth bounds how deep indexes may nest below index.json.
const maxIndexDepth = 4

// readLayout reads the images of an OCI image layout (a directory or an
// oci-archive): the oci-layout file, then each entry of index.json. path is
// the layout's directory or archive file, whose name names the repository of
// an entry whose ref.name is a bare tag.
func readLayout(src source, path string) ([]layerstore.ImageSource, error) {
	if err := checkLayoutFile(src); err != nil {
		return nil, err
	}
	raw, err := readMember(src, ocispec.ImageIndexFile)
	if err != nil {
		return nil, err
	}
	idx, err := parseIndex(raw, ocispec.ImageIndexFile)
	if err != nil {
		return nil, err
	}
	if len(idx.Manifests) == 0 {
		return nil, fmt.Errorf("%w %s: lists no images", layerstore.ErrInvalid, ocispec.ImageIndexFile)
	}
	var images []layerstore.ImageSource
	for i, desc := range idx.Manifests {
		names, err := layoutNames(desc, path)
		if err != nil {
			return nil, fmt.Errorf("%s manifests[%d]: %w", ocispec.ImageIndexFile, i, err)
		}
		img, err := resolve(src, desc, 0)
		if err != nil {
			return nil, fmt.Errorf("%s manifests[%d]: %w", ocispec.ImageIndexFile, i, err)
		}
		img.Names = names
		images = mergeImage(images, img)
	}
	return images, nil
}

// checkLayoutFile checks the oci-layout file names a version 1 layout.
func checkLayoutFile(src source) error {
	if !src.has(ocispec.ImageLayoutFile) {
		return fmt.Errorf("%w OCI layout: has %s but no %s file", layerstore.ErrInvalid, ocispec.ImageIndexFile, ocispec.ImageLayoutFile)
	}
	raw, err := readMember(src, ocispec.ImageLayoutFile)
	if err != nil {
		return err
	}
	var l ocispec.ImageLayout
	if err := json.Unmarshal(raw, &l); err != nil {
		return fmt.Errorf("%w %s: %w", layerstore.ErrInvalid, ocispec.ImageLayoutFile, err)
	}
	if !strings.HasPrefix(l.Version, "1.") {
		return fmt.Errorf("%w %s: imageLayoutVersion %q, want 1.x", layerstore.ErrInvalid, ocispec.ImageLayoutFile, l.Version)
	}
	return nil
}

// layoutNames returns the normalized names an index.json entry tags its image
// with: io.containerd.image.name if present, else
// org.opencontainers.image.ref.name (see the package doc for the rule).
func layoutNames(desc ocispec.Descriptor, path string) ([]string, error) {
	ref := desc.Annotations[annotationContainerdName]
	key := annotationContainerdName
	if ref == "" {
		ref, key = desc.Annotations[ocispec.AnnotationRefName], ocispec.AnnotationRefName
		if isBareTag(ref) {
			repo := layoutRepo(path)
			if repo == "" {
				return nil, nil // nothing to name it by: loaded by ID
			}
			ref = repo + ":" + ref
		}
	}
	if ref == "" {
		return nil, nil
	}
	n, err := layerstore.NormalizeRef(ref)
	if err != nil {
		return nil, fmt.Errorf("annotation %s: %w", key, err)
	}
	return []string{n}, nil
}

// versionRE matches a tag that reads as a version: "1", "1.2", "v2.0-rc1".
var versionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^v?[0-9][\w.-]*$`) })

// isBareTag says whether a ref.name is only a tag, as the OCI spec's own
// example ("v1.0.1") and tools that write "latest" have it, rather than a
// name: "latest", a version, or a valid tag that is no valid repository
// name ("Stable", "_x"). A bare word that can be a repository ("demo", as
// skopeo's oci:DIR:demo writes) stays a name.
func isBareTag(ref string) bool {
	if ref == "" || strings.ContainsAny(ref, "/:@") || !tagRE().MatchString(ref) {
		return false
	}
	if ref == "latest" || versionRE().MatchString(ref) {
		return true
	}
	_, err := layerstore.NormalizeRef(ref)
	return err != nil
}

var tagRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[\w][\w.-]{0,127}$`) })

// layoutRepo is podman's name for an image of a layout at path:
// "localhost/" and the directory's or archive's name, lowercased, without
// its extensions ("/tmp/My App.oci.tar" -> "localhost/my-app"); "" when the
// path gives no usable name (standard input).
func layoutRepo(path string) string {
	base := strings.ToLower(filepath.Base(filepath.Clean(path)))
	for _, ext := range []string{".gz", ".tgz", ".zst", ".zstd", ".xz", ".tar", ".oci", ".ocidir"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.Trim(repoCharRE().ReplaceAllString(base, "-"), "-._")
	if base == "" || path == "" || path == "-" || path == streamName {
		return ""
	}
	repo := "localhost/" + base
	if _, err := layerstore.NormalizeRef(repo); err != nil {
		return ""
	}
	return repo
}

var repoCharRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^a-z0-9._-]+`) })

// mergeImage appends img to images, or adds its names to an earlier image
// with the same manifest (an index.json that tags one image twice).
func mergeImage(images []layerstore.ImageSource, img layerstore.ImageSource) []layerstore.ImageSource {
	for i := range images {
		if images[i].ManifestDigest != img.ManifestDigest {
			continue
		}
		for _, n := range img.Names {
			if !contains(images[i].Names, n) {
				images[i].Names = append(images[i].Names, n)
			}
		}
		return images
	}
	return append(images, img)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sniffed is the part of a manifest or index that tells which it is.
type sniffed struct {
	MediaType string          `json:"mediaType"`
	Manifests json.RawMessage `json:"manifests"`
}

// resolve reads the manifest desc names, following nested indexes, and the
// image it describes.
func resolve(src source, desc ocispec.Descriptor, depth int) (layerstore.ImageSource, error) {
	if depth > maxIndexDepth {
		return layerstore.ImageSource{}, fmt.Errorf("%w index %s: indexes nest more than %d deep", layerstore.ErrInvalid, desc.Digest, maxIndexDepth)
	}
	mt := desc.MediaType
	if mt != "" && !isManifestType(mt) && !isIndexType(mt) {
		return layerstore.ImageSource{}, fmt.Errorf("%w manifest %s: unsupported media type %q", layerstore.ErrInvalid, desc.Digest, mt)
	}
	raw, err := readBlob(src, desc, "manifest")
	if err != nil {
		return layerstore.ImageSource{}, err
	}
	if mt == "" { // optional in a descriptor: tell by content
		var s sniffed
		if err := json.Unmarshal(raw, &s); err != nil {
			return layerstore.ImageSource{}, fmt.Errorf("%w manifest %s: %w", layerstore.ErrInvalid, desc.Digest, err)
		}
		mt = s.MediaType
		if mt == "" && s.Manifests != nil {
			mt = ocispec.MediaTypeImageIndex
		}
	}
	if isIndexType(mt) {
		idx, err := parseIndex(raw, "index "+desc.Digest.String())
		if err != nil {
			return layerstore.ImageSource{}, err
		}
		child, err := pickManifest(idx, desc.Digest)
		if err != nil {
			return layerstore.ImageSource{}, err
		}
		img, err := resolve(src, child, depth+1)
		if err != nil {
			return layerstore.ImageSource{}, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		return img, nil
	}
	m, err := parseManifest(raw, desc)
	if err != nil {
		return layerstore.ImageSource{}, err
	}
	cfg, err := readBlob(src, m.Config, "config")
	if err != nil {
		return layerstore.ImageSource{}, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	img := layerstore.ImageSource{
		ManifestDigest: desc.Digest,
		ManifestRaw:    raw,
		Manifest:       m,
		ConfigRaw:      cfg,
		ConfigDigest:   m.Config.Digest,
	}
	if img.Config, err = parseConfig(cfg, m.Config.Digest, len(m.Layers)); err != nil {
		return layerstore.ImageSource{}, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	for i, l := range m.Layers {
		img.Layers = append(img.Layers, layerstore.LayerBlob{
			Digest:    l.Digest,
			Size:      l.Size,
			MediaType: l.MediaType,
			DiffID:    img.Config.RootFS.DiffIDs[i],
			Open:      openBlob(src, blobPath(l.Digest), l.Digest),
		})
	}
	return img, nil
}

// parseIndex parses an image index (index.json or a nested one).
func parseIndex(raw []byte, what string) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return idx, fmt.Errorf("%w %s: %w", layerstore.ErrInvalid, what, err)
	}
	if idx.SchemaVersion != 2 {
		return idx, fmt.Errorf("%w %s: schemaVersion %d, want 2", layerstore.ErrInvalid, what, idx.SchemaVersion)
	}
	if idx.MediaType != "" && !isIndexType(idx.MediaType) {
		return idx, fmt.Errorf("%w %s: media type %q is not an index", layerstore.ErrInvalid, what, idx.MediaType)
	}
	return idx, nil
}

// parseManifest parses an image manifest and checks its media types and
// digests.
func parseManifest(raw []byte, desc ocispec.Descriptor) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("%w manifest %s: %w", layerstore.ErrInvalid, desc.Digest, err)
	}
	if m.SchemaVersion != 2 {
		return m, fmt.Errorf("%w manifest %s: schemaVersion %d, want 2", layerstore.ErrInvalid, desc.Digest, m.SchemaVersion)
	}
	if m.MediaType != "" && !isManifestType(m.MediaType) {
		return m, fmt.Errorf("%w manifest %s: unsupported media type %q", layerstore.ErrInvalid, desc.Digest, m.MediaType)
	}
	if m.MediaType != "" && desc.MediaType != "" && m.MediaType != desc.MediaType {
		return m, fmt.Errorf("%w manifest %s: media type %q, but its descriptor says %q", layerstore.ErrInvalid, desc.Digest, m.MediaType, desc.MediaType)
	}
	if !isConfigType(m.Config.MediaType) {
		return m, fmt.Errorf("%w manifest %s: unsupported config media type %q (not an image)", layerstore.ErrInvalid, desc.Digest, m.Config.MediaType)
	}
	if err := validDigest(m.Config.Digest, fmt.Sprintf("manifest %s config", desc.Digest)); err != nil {
		return m, err
	}
	for i, l := range m.Layers {
		if _, ok := LayerCompression(l.MediaType); !ok {
			return m, fmt.Errorf("%w manifest %s layers[%d] %s: unsupported layer media type %q", layerstore.ErrInvalid, desc.Digest, i, l.Digest, l.MediaType)
		}
		if err := validDigest(l.Digest, fmt.Sprintf("manifest %s layers[%d]", desc.Digest, i)); err != nil {
			return m, err
		}
		if l.Size < 0 {
			return m, fmt.Errorf("%w manifest %s layers[%d] %s: negative size %d", layerstore.ErrInvalid, desc.Digest, i, l.Digest, l.Size)
		}
	}
	return m, nil
}

// pickManifest chooses the manifest of a nested index to import: the first
// for linux/runtime.GOARCH, else the first that is not an attestation.
func pickManifest(idx ocispec.Index, d digest.Digest) (ocispec.Descriptor, error) {
	var first *ocispec.Descriptor
	for i, m := range idx.Manifests {
		if p := m.Platform; p != nil && p.OS == "linux" && p.Architecture == runtime.GOARCH {
			return m, nil
		}
		if first == nil && !isAttestation(m) {
			first = &idx.Manifests[i]
		}
	}
	if first == nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w index %s: lists no image manifests", layerstore.ErrInvalid, d)
	}
	return *first, nil
}

// isAttestation tells buildkit's provenance and SBOM manifests (platform
// unknown/unknown) from images.
func isAttestation(d ocispec.Descriptor) bool {
	return d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" ||
		(d.Platform != nil && d.Platform.OS == "unknown")
}
