// Package imagefmt reads container image archives: it finds the images in
// one, verifies their manifests and configs, and hands out their layer blobs
// unread, as layerstore.ImageSource values the store ingests. It imports
// package layerstore only for that type and its sentinel errors (layerstore
// never imports it), writes nothing but temporary files, and keeps no state
// outside an Archive.
//
// The sentinel errors named below (ErrInvalid, …) are package layerstore's.
//
// # Formats
//
// Open tells the format by content, never by file name:
//
//   - oci-layout: a directory holding oci-layout and index.json (OCI image
//     layout 1.x), blobs under blobs/<algorithm>/<hex>.
//   - oci-archive: a tar of such a directory (skopeo's oci-archive:).
//   - docker-archive: a tar whose manifest.json lists images, as docker save
//     writes it: configs as <hex>.json and layers as <hex>.tar or
//     <id>/layer.tar (old docker, skopeo; symlinks and hard links between
//     members are followed), or configs and layers as blobs/sha256/<hex>
//     (docker 25+). A docker 25+ archive also holds an OCI layout; it is
//     still read through manifest.json, which names only what docker saved,
//     where its index.json may name platforms whose blobs are not there. A
//     directory holding an extracted docker save reads the same way.
//
// A file compressed with gzip or zstd (docker save | gzip) is decompressed
// to a temporary file first; OpenReader spools a stream (standard input) to
// one. Temporary files are unlinked as soon as they are created, so none
// outlives the process; Archive.Close frees their space. Anything else fails
// with ErrUnknownFormat: "PATH is not an image archive: no index.json or
// manifest.json".
//
// A tar is indexed once, reading only its headers (member name -> offset and
// size), and members are read as io.SectionReaders over the one open file:
// nothing is extracted, and layers can be read concurrently. Member names are
// cleaned ("./x" is "x"); an archive with a member name that is absolute or
// climbs out of it ("..") is refused with ErrInvalid, as is a manifest.json
// naming such a path. A directory is read through os.Root, so no symlink in
// it reaches outside it.
//
// # What Open verifies
//
// Open reads every image's manifest and config when the archive is opened and
// fails (with the archive path and the index entry, digest or member at hand)
// on the first problem: bad JSON, a schemaVersion other than 2, a bad digest,
// a manifest or config whose size or digest differs from its descriptor
// (ErrDigestMismatch), an unsupported manifest, config or layer media type
// (supported layers: see LayerCompression), or a layer count that differs
// from the config's rootfs.diff_ids (ErrInvalid). A missing manifest or
// config is ErrMissingBlob. Layer blobs are not read: LayerBlob.Open returns
// their raw bytes, neither decompressed nor verified, and the caller (the
// store) verifies digest, size and diffID while it streams. In an OCI layout
// a missing layer blob surfaces from LayerBlob.Open as ErrMissingBlob; in a
// docker-archive Open itself reports it, because it must read the first
// bytes of each layer to tell its compression.
//
// # OCI specifics
//
// Each index.json entry is one image. An entry that is itself an index
// (multi-platform) is followed, to at most 4 levels: the first manifest for
// linux/runtime.GOARCH is taken, or, when no platform matches, the first
// manifest that is not a buildkit attestation (platform unknown/unknown).
// Entries that name the same manifest are one Image with all their names.
//
// # Names
//
// Every name is normalized by layerstore.NormalizeRef ("name:tag", docker.io/library/
// dropped). For an index.json entry, the annotation io.containerd.image.name
// (containerd and docker 25+ put the full reference there) wins; otherwise
// org.opencontainers.image.ref.name is used: a full reference
// ("registry.example/app:v1", "demo:v1") as it is, a bare word ("demo",
// as skopeo's oci:DIR:demo writes) as a repository name with tag "latest".
// A ref.name that is only a tag ("latest", a version such as "v1.0.1" as in
// the OCI spec's example, or a tag that cannot be a repository name) is
// named as podman names it: "localhost/" and the layout's directory or
// archive name without extensions, with that tag ("./app.oci.tar" with
// ref.name "v1" loads as localhost/app:v1); from standard input such an
// image has no name. For a docker-archive, the names are manifest.json's
// RepoTags. A name that does not normalize (uppercase, say) fails Open with
// ErrInvalid naming the annotation or RepoTags.
//
// # docker-archive manifests
//
// docker save writes no image manifest, so for each image this package
// synthesizes an OCI manifest (schemaVersion 2, OCI media types), and
// ImageSource.ManifestRaw and ManifestDigest are those of its canonical JSON, not
// of any registry manifest. Its config descriptor is the config member (its
// digest is the image ID; a member named <hex>.json or blobs/sha256/<hex>
// must hash to that name). Each layer's media type comes from the member's
// magic bytes (OCI tar, tar+gzip or tar+zstd); its digest is the diffID when
// the member is an uncompressed tar (a tar's digest is its diffID), the name
// of a blobs/sha256/<hex> member, or else computed by reading the member
// once.
package imagefmt
