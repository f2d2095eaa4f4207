package layerstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"testing"
	"time"
)

// FuzzReadTar feeds arbitrary bytes to layer ingest. It must never panic;
// whatever it accepts must build a tree; every path it stores is clean.
func FuzzReadTar(f *testing.F) {
	files, _ := filepath.Glob("testdata/layers/*.tar")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(makeTar(f, tarEntry{name: "a/.wh.b"}, tarEntry{name: "a/.wh..wh..opq"}, tarEntry{name: "a/c", body: "c"}, tarEntry{name: "d", typ: '1', link: "a/c"}))
	f.Add(makeTar(f, tarEntry{name: "../x", body: "x"}))
	root := f.TempDir()
	s, err := Open(root, &Options{MaxFileSize: 4 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := s.newStaging()
		if err != nil {
			t.Fatal(err)
		}
		defer st.discard()
		hang := time.AfterFunc(20*time.Second, func() { panic("parseLayer hung on this input") })
		defer hang.Stop()
		ing, err := s.parseLayer(context.Background(), LayerBlob{Size: -1, Open: opener(data)}, st, nil, nil, maxTrailer)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error that is neither invalid nor corrupt: %v", err)
			}
			return
		}
		for _, e := range ing.entries {
			if p, err := cleanPath(e.Path); err != nil || p != e.Path {
				t.Fatalf("stored path %q is not clean", e.Path)
			}
		}
		if _, err := BuildTree("", ing.entries); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("BuildTree: %v", err)
		}
	})
}
