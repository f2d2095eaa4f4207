package layerstore

import (
	"errors"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestRepoDigests: an image made here has none; AddRepoDigest records one
// (normalized, once), ResolveImage finds the image by it, a bad one is
// ErrInvalid; AddLayerBlob remembers a registry blob and its media type.
func TestRepoDigests(t *testing.T) {
	s := newTestStore(t)
	img, err := importLayers(t, s, "localhost:5000/app:v1", makeTar(t, tarEntry{name: "f", body: "x", typ: '0', mode: 0o644}))
	if err != nil {
		t.Fatal(err)
	}
	if len(img.RepoDigests) != 0 {
		t.Fatalf("a new image has repo digests %v", img.RepoDigests)
	}
	d := digest.FromString("manifest")
	for range 2 {
		if err := s.AddRepoDigest("localhost:5000/app:v1", "localhost:5000/app@"+d.String()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddRepoDigest("localhost:5000/app:v1", "docker.io/library/app@"+d.String()); err != nil {
		t.Fatal(err)
	}
	got, err := s.ResolveImage("localhost:5000/app@" + d.String())
	if err != nil || got.ID != img.ID {
		t.Fatalf("by repo digest: %v %v", got.ID, err)
	}
	if want := []string{"app@" + d.String(), "localhost:5000/app@" + d.String()}; !slices.Equal(got.RepoDigests, want) {
		t.Errorf("RepoDigests = %v, want %v", got.RepoDigests, want)
	}
	for _, bad := range []string{"localhost:5000/app:v1", "app@sha256:short", "UPPER@" + d.String()} {
		if err := s.AddRepoDigest("localhost:5000/app:v1", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddRepoDigest(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	blob := digest.FromString("blob")
	if err := s.AddLayerBlob(img.Layers[0], blob, "application/vnd.docker.image.rootfs.diff.tar.gzip"); err != nil {
		t.Fatal(err)
	}
	li, err := s.Layer(img.Layers[0])
	if err != nil || li.MediaTypes[blob] != "application/vnd.docker.image.rootfs.diff.tar.gzip" || !slices.Contains(li.BlobDigests, blob) {
		t.Errorf("layer after AddLayerBlob: %+v %v", li, err)
	}
	if err := s.AddLayerBlob(digest.FromString("nope"), blob, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddLayerBlob of a missing layer: %v", err)
	}
	mustCheck(t, s)
}
