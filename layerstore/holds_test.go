package layerstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestStore_Holds(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	layer := makeTar(t, tarEntry{name: "f", body: "held", typ: '0', mode: 0o644})
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil }
	// Held before the tag exists: check calls the hold garbage meanwhile.
	if err := s.Hold("snap:1", "containerd's snapshotter"); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Check(false); err != nil || len(r.Garbage) != 1 || !strings.Contains(r.Garbage[0], "hold on snap:1") {
		t.Errorf("check of a hold without its tag: %v %v", r, err)
	}
	img, err := s.NewImage(ctx, NewImageOptions{Layers: []NewLayer{{Open: open}}, Names: []string{"snap:1", "other:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hold("snap:1", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("a hold without a holder: %v", err)
	}
	rep, err := s.Prune(true)
	if err != nil || rep.DeletedImages != 0 {
		t.Fatalf("prune -a of a held image: %+v %v", rep, err)
	}
	for _, force := range []bool{false, true} {
		for _, ref := range []string{"snap:1", img.ID.String()[7:19]} {
			_, err := s.RemoveImage(ref, force)
			var ce *ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInUse) ||
				err.Error() != "conflict: unable to delete "+ref+" (cannot be forced) - image is held by containerd's snapshotter (as snap:1)" {
				t.Errorf("rmi %s (force %v): %v", ref, force, err)
			}
		}
	}
	empty, err := s.NewImage(ctx, NewImageOptions{Names: []string{"empty:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(empty.ID.String(), "snap:1"); !errors.Is(err, ErrInUse) {
		t.Errorf("a held tag moved to another image: %v", err)
	}
	// Another tag of the image goes; the image stays.
	if rep, err := s.RemoveImage("other:1", false); err != nil || len(rep.Untagged) != 1 || rep.DeletedImages != 0 {
		t.Errorf("rmi of the other tag: %+v %v", rep, err)
	}
	if h, err := s.Holds(); err != nil || len(h) != 1 || h["snap:1"] != "containerd's snapshotter" {
		t.Errorf("holds: %v %v", h, err)
	}
	if err := s.Release("snap:1"); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.RemoveImage("snap:1", false); err != nil || rep.DeletedImages != 1 {
		t.Errorf("rmi after the release: %+v %v", rep, err)
	}
	if err := s.Release("snap:1"); err != nil {
		t.Errorf("release of a tag not held: %v", err)
	}
	if _, err := s.RemoveImage("empty:1", false); err != nil {
		t.Fatal(err)
	}
}
