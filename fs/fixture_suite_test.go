package fs_test

// The fixture image as a *layerstore.Tree, read straight from its OCI layout
// without the store. Everything the suite needs from an image comes through
// suiteLoadImage, so that this file can be swapped for the store's own
// import when it exists.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/layerstore"
)

// suiteFixtureOCI is the fixture image's OCI layout (internal/fixtures).
func suiteFixtureOCI(t testing.TB) string { return filepath.Join(fixtures.Dir(t), "oci") }

// suiteFixtureRootfs is umoci's unpack of the fixture image: the reference answer.
func suiteFixtureRootfs(t testing.TB) string { return filepath.Join(fixtures.Dir(t), "rootfs") }

// suiteImage is an image's merged tree with its contents in a scratch objects
// directory.
type suiteImage struct {
	Tree    *layerstore.Tree
	Objects string // objects dir: one read-only file per content, named by sha256 hex
}

// ObjectPath is what fs.Options.Objects wants.
func (img *suiteImage) ObjectPath(d digest.Digest) string {
	return filepath.Join(img.Objects, d.Encoded())
}

// suiteRequireFixtures skips the test without root and fails it when the
// fixtures cannot be had.
func suiteRequireFixtures(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, owners and device nodes")
	}
	for _, p := range []string{suiteFixtureOCI(t) + "/index.json", suiteFixtureRootfs(t)} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("fixtures incomplete: %v", err)
		}
	}
}

// suiteLoadImage reads the fixture image (tag "demo") from its OCI layout into
// a tree, writing contents into a fresh objects dir under t.TempDir().
func suiteLoadImage(t *testing.T) *suiteImage {
	t.Helper()
	suiteRequireFixtures(t)
	img, err := loadOCILayout(suiteFixtureOCI(t), filepath.Join(t.TempDir(), "objects"))
	if err != nil {
		t.Fatalf("load fixture image: %v", err)
	}
	return img
}

type ociDescriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
}

func readBlobJSON(layout string, d digest.Digest, v any) error {
	b, err := os.ReadFile(filepath.Join(layout, "blobs", d.Algorithm().String(), d.Encoded()))
	if err != nil {
		return err
	}
	if got := digest.FromBytes(b); got != d {
		return fmt.Errorf("blob %s hashes to %s", d, got)
	}
	return json.Unmarshal(b, v)
}

// loadOCILayout builds the merged tree of the first manifest of the layout's
// index.json.
func loadOCILayout(layout, objects string) (*suiteImage, error) {
	if err := os.MkdirAll(objects, 0o755); err != nil {
		return nil, err
	}
	var index struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	if len(index.Manifests) == 0 {
		return nil, errors.New("index.json: no manifests")
	}
	var manifest struct {
		Layers []ociDescriptor `json:"layers"`
	}
	if err := readBlobJSON(layout, index.Manifests[0].Digest, &manifest); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var layers [][]*layerstore.Entry
	chain := digest.Digest("")
	for _, l := range manifest.Layers {
		entries, diffID, err := readLayerBlob(filepath.Join(layout, "blobs", l.Digest.Algorithm().String(), l.Digest.Encoded()), l.MediaType, objects)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		layers = append(layers, entries)
		if chain == "" {
			chain = diffID
		} else {
			chain = digest.FromString(chain.String() + " " + diffID.String())
		}
	}
	tree, err := layerstore.BuildTree(chain, layers...)
	if err != nil {
		return nil, err
	}
	return &suiteImage{Tree: tree, Objects: objects}, nil
}

func readLayerBlob(blob, mediaType, objects string) ([]*layerstore.Entry, digest.Digest, error) {
	f, err := os.Open(blob)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(mediaType, "+gzip") || strings.HasSuffix(mediaType, ".gzip"):
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, "", err
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(mediaType, ".tar"):
	default:
		return nil, "", fmt.Errorf("unsupported layer media type %q", mediaType)
	}
	h := sha256.New()
	entries, err := readLayerTar(io.TeeReader(r, h), objects)
	if err != nil {
		return nil, "", err
	}
	if _, err := io.Copy(h, r); err != nil { // tar padding after the end marker
		return nil, "", err
	}
	return entries, digest.NewDigest(digest.SHA256, h), nil
}

// suiteCleanPath turns a tar member name into the store's path form.
func suiteCleanPath(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// readLayerTar turns a layer tar into entries in key order, writing each
// regular file's content to objects/<sha256 hex>.
func readLayerTar(r io.Reader, objects string) ([]*layerstore.Entry, error) {
	tr := tar.NewReader(r)
	byPath := map[string]*layerstore.Entry{}
	var entries []*layerstore.Entry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		e := &layerstore.Entry{
			Path:  suiteCleanPath(hdr.Name),
			Mode:  uint32(hdr.Mode) & 0o7777,
			UID:   uint32(hdr.Uid),
			GID:   uint32(hdr.Gid),
			Mtime: hdr.ModTime.UnixNano(),
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
			}
		}
		name := path.Base(e.Path)
		switch {
		case name == layerstore.OpaqueName:
			e.Type = layerstore.TypeOpaque
		case strings.HasPrefix(name, layerstore.WhiteoutPrefix):
			e.Type = layerstore.TypeWhiteout
		default:
			switch hdr.Typeflag {
			case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
				e.Type = layerstore.TypeReg
				e.Size = hdr.Size
				d, err := writeObject(tr, objects)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", hdr.Name, err)
				}
				e.Digest = d
			case tar.TypeLink:
				target, ok := byPath[suiteCleanPath(hdr.Linkname)]
				if !ok {
					return nil, fmt.Errorf("%s: hard link to %q, not an earlier entry", hdr.Name, hdr.Linkname)
				}
				e.Type = target.Type
				e.HardLink = target.Path
				e.Size = target.Size
				e.Digest = target.Digest
				e.Link = target.Link
				e.Devmajor, e.Devminor = target.Devmajor, target.Devminor
			case tar.TypeSymlink:
				e.Type = layerstore.TypeSymlink
				e.Link = hdr.Linkname
			case tar.TypeDir:
				e.Type = layerstore.TypeDir
			case tar.TypeChar, tar.TypeBlock:
				e.Type = layerstore.TypeChar
				if hdr.Typeflag == tar.TypeBlock {
					e.Type = layerstore.TypeBlock
				}
				e.Devmajor, e.Devminor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
			case tar.TypeFifo:
				e.Type = layerstore.TypeFifo
			default:
				return nil, fmt.Errorf("%s: unsupported tar type %q", hdr.Name, hdr.Typeflag)
			}
		}
		if old, ok := byPath[e.Path]; ok { // a later member of the same name wins
			entries = slices.DeleteFunc(entries, func(x *layerstore.Entry) bool { return x == old })
		}
		byPath[e.Path] = e
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *layerstore.Entry) int {
		return bytes.Compare(layerstore.Key(a.Path), layerstore.Key(b.Path))
	})
	return entries, nil
}

// writeObject stores r's content as objects/<sha256 hex>, read-only.
func writeObject(r io.Reader, objects string) (digest.Digest, error) {
	tmp, err := os.CreateTemp(objects, ".tmp-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o444); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	hexSum := hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(tmp.Name(), filepath.Join(objects, hexSum)); err != nil {
		return "", err
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hexSum), nil
}
