package imagefmt

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's media types, as the distribution registry and docker save name them.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	MediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// Compression of a layer blob, as LayerCompression names it.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
)

// LayerCompression returns the compression ("none", "gzip" or "zstd") that a
// supported layer media type declares, and false for a media type this
// package does not accept as a layer. Supported: the OCI layer types (tar,
// tar+gzip, tar+zstd and their non-distributable variants) and docker's
// rootfs.diff.tar, .tar.gzip, .tar.zstd and foreign .tar.gzip.
func LayerCompression(mediaType string) (string, bool) {
	switch mediaType {
	case ocispec.MediaTypeImageLayer,
		ocispec.MediaTypeImageLayerNonDistributable, //nolint:staticcheck // deprecated, still written by old tools
		MediaTypeDockerLayer:
		return CompressionNone, true
	case ocispec.MediaTypeImageLayerGzip,
		ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck
		MediaTypeDockerLayerGzip,
		MediaTypeDockerForeignLayer:
		return CompressionGzip, true
	case ocispec.MediaTypeImageLayerZstd,
		ocispec.MediaTypeImageLayerNonDistributableZstd, //nolint:staticcheck
		MediaTypeDockerLayerZstd:
		return CompressionZstd, true
	}
	return "", false
}

func isManifestType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

func isIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

func isConfigType(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == MediaTypeDockerConfig
}
