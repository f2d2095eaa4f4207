package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/layerstore/export"
	"github.com/strata-dev/strata/layerstore/imagefmt"
	"github.com/strata-dev/strata/transfer"
)

// archiveImages opens a fixture archive and returns its images.
func archiveImages(t *testing.T, name string) []layerstore.ImageSource {
	t.Helper()
	a, err := imagefmt.Open(filepath.Join(fixtures.Dir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a.Images()
}

// TestLoad_FromStoreSource: a source that is no archive (what a registry
// client hands over, here the image one store offers for a push) loads into
// another store through the same Load: same ID, names and layers.
func TestLoad_FromStoreSource(t *testing.T) {
	ctx := context.Background()
	a := storetest.Open(t)
	loaded, err := transfer.Load(ctx, a, archiveImages(t, "oci-zstd"), transfer.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 {
		t.Fatalf("loaded %d images, want 1", len(loaded))
	}
	src, err := a.ImageSource(&loaded[0])
	if err != nil {
		t.Fatal(err)
	}
	if src.Manifest.Config.Digest != loaded[0].ID || len(src.Manifest.Layers) != len(loaded[0].Layers) {
		t.Errorf("manifest %+v does not describe image %s", src.Manifest, loaded[0].ID)
	}
	b := storetest.Open(t)
	var progress []layerstore.Progress
	var names []string
	got, err := transfer.Load(ctx, b, []layerstore.ImageSource{*src}, transfer.LoadOptions{
		Progress: func(*layerstore.ImageSource) func(layerstore.Progress) {
			return func(p layerstore.Progress) { progress = append(progress, p) }
		},
		Loaded: func(_ layerstore.Image, n []string) { names = append(names, n...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != loaded[0].ID || !slices.Equal(got[0].RepoTags, loaded[0].RepoTags) {
		t.Fatalf("loaded %+v, want the image %s %v", got, loaded[0].ID, loaded[0].RepoTags)
	}
	if !slices.Equal(names, []string{"demo:latest"}) || len(progress) == 0 {
		t.Errorf("Loaded saw %q, Progress %d events", names, len(progress))
	}
	storetest.CheckLayers(t, b, got[0])
}

// TestLoad_Names: Names picks images and the names they get; a name the
// source does not have, or a bad one, loads nothing.
func TestLoad_Names(t *testing.T) {
	ctx := context.Background()
	imgs := archiveImages(t, "oci")
	imgs[0].Names = []string{"demo:latest", "demo:v2", "other:1"}
	cases := []struct {
		names []string
		want  []string // tags stored; nil: an error wrapping err
		err   error
	}{
		{nil, []string{"demo:latest", "demo:v2", "other:1"}, nil},
		{[]string{"demo"}, []string{"demo:latest"}, nil},
		{[]string{"docker.io/library/other:1", "demo:v2"}, []string{"demo:v2", "other:1"}, nil},
		{[]string{"nosuch"}, nil, layerstore.ErrNotFound},
		{[]string{"demo@sha256:" + strings.Repeat("a", 64)}, nil, layerstore.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.names, ","), func(t *testing.T) {
			s := storetest.Open(t)
			got, err := transfer.Load(ctx, s, imgs, transfer.LoadOptions{Names: tc.names, From: "the archive"})
			if tc.want == nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want one wrapping %v", err, tc.err)
				}
				if all, _ := s.Images(); len(all) != 0 {
					t.Errorf("a failed load stored %d images", len(all))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !slices.Equal(got[0].RepoTags, tc.want) {
				t.Errorf("loaded %v, want one image tagged %q", got, tc.want)
			}
		})
	}
	if imgs[0].Names[0] != "demo:latest" || len(imgs[0].Names) != 3 {
		t.Errorf("Load changed the caller's images: %q", imgs[0].Names)
	}
}

// TestSave_NamesAndRoundTrip: Save by name writes that name only, by ID
// every tag; what it writes loads back as the same image.
func TestSave_NamesAndRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t)
	loaded, err := transfer.Load(ctx, s, archiveImages(t, "demo.docker.tar"), transfer.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("demo", "other:1"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref  string
		want []string
	}{
		{"demo", []string{"demo:latest"}},
		{"docker.io/library/other:1", []string{"other:1"}},
		{string(loaded[0].ID), []string{"demo:latest", "other:1"}},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			var buf bytes.Buffer
			if err := transfer.Save(s, []string{tc.ref}, export.FormatDockerArchive, &buf, "", export.Options{}); err != nil {
				t.Fatal(err)
			}
			a, err := imagefmt.OpenReader(&buf, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			imgs := a.Images()
			if len(imgs) != 1 || !slices.Equal(imgs[0].Names, tc.want) {
				t.Fatalf("saved %d images named %q, want one named %q", len(imgs), imgs[0].Names, tc.want)
			}
			fresh := storetest.Open(t)
			back, err := transfer.Load(ctx, fresh, imgs, transfer.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if back[0].ID != loaded[0].ID {
				t.Errorf("image ID %s after save and load, want %s", back[0].ID, loaded[0].ID)
			}
			storetest.CheckLayers(t, fresh, back[0])
		})
	}
	if err := transfer.Save(s, []string{"nosuch"}, export.FormatDockerArchive, io.Discard, "", export.Options{}); !errors.Is(err, layerstore.ErrNotFound) {
		t.Errorf("save of a missing image: %v, want ErrNotFound", err)
	}
}

// TestExport_RefusesCompressedLayers: export writes layers as uncompressed
// tars; a source with compressed blobs (an archive's, as is) is refused, not
// written with a digest that does not match.
func TestExport_RefusesCompressedLayers(t *testing.T) {
	imgs := archiveImages(t, "oci-zstd")
	err := export.Write(export.FormatOCIArchive, io.Discard, "", []*layerstore.ImageSource{&imgs[0]}, export.Options{})
	if !errors.Is(err, layerstore.ErrInvalid) || !strings.Contains(err.Error(), "not the uncompressed tar") {
		t.Errorf("export of zstd layers: %v, want ErrInvalid", err)
	}
}

// TestLoad_PastEndOfArchive: an OCI layout whose layer's tar goes on for a
// gigabyte of zeros past its end-of-archive marker (a gzip blob of 1 MB)
// is refused, naming the layer, and leaves the store empty.
func TestLoad_PastEndOfArchive(t *testing.T) {
	layout, blob := fixtures.PaddedLayout(t, "gzip", 1<<30)
	s := storetest.Open(t)
	_, err := storetest.LoadArchive(s, layout)
	if !errors.Is(err, layerstore.ErrInvalid) || !strings.Contains(err.Error(), string(blob)) || !strings.Contains(err.Error(), "end-of-archive") {
		t.Fatalf("load: %v, want ErrInvalid naming layer %s and the end-of-archive marker", err, blob)
	}
	t.Logf("load: %v", err)
	if r := storetest.Check(t, s); r != nil && (r.Images != 0 || r.Layers != 0 || r.Objects != 0) {
		t.Errorf("stored %d images, %d layers, %d objects", r.Images, r.Layers, r.Objects)
	}
}
