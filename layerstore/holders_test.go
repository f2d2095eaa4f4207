package layerstore

import (
	"errors"
	"slices"
	"testing"
)

// A tag or a build cache key moved to another image leaves the first one's
// names (read from the holders index) and joins the second's; removing an
// image drops its cache keys, not another's; check finds the index right
// after each step.
func TestStore_NamesIndex_MovesWithTagsAndCacheKeys(t *testing.T) {
	s := newTestStore(t)
	a, err := importLayers(t, s, "a:1", makeTar(t, tarEntry{name: "a", body: "a"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := importLayers(t, s, "b:1", makeTar(t, tarEntry{name: "b", body: "b"}))
	if err != nil {
		t.Fatal(err)
	}
	tags := func(ref string) []string {
		t.Helper()
		img, err := s.ResolveImage(ref)
		if err != nil {
			t.Fatal(err)
		}
		return img.RepoTags
	}
	for _, step := range []func() error{
		func() error { return s.Tag("a:1", "moving:1") },
		func() error { return s.Tag("b:1", "moving:1") },
		func() error { return s.CachePut("k1", a.ID) },
		func() error { return s.CachePut("k2", a.ID) },
		func() error { return s.CachePut("k1", b.ID) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		checkOK(t, s, "after a step")
	}
	if got := tags(a.ID.String()); !slices.Equal(got, []string{"a:1"}) {
		t.Errorf("tags of a: %v", got)
	}
	if got := tags(b.ID.String()); !slices.Equal(got, []string{"b:1", "moving:1"}) {
		t.Errorf("tags of b: %v", got)
	}
	if img, err := s.CacheGet("k1"); err != nil || img.ID != b.ID || !slices.Equal(img.RepoTags, []string{"b:1", "moving:1"}) {
		t.Errorf("k1: %v %v %v", img.ID, img.RepoTags, err)
	}
	if _, err := s.RemoveImage("a:1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CacheGet("k2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("k2 after rmi of its image: %v", err)
	}
	if img, err := s.CacheGet("k1"); err != nil || img.ID != b.ID {
		t.Errorf("k1 after rmi of a: %v %v", img.ID, err)
	}
}
