package layerstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDownload_CheckAndGC: a download is held by one pull at a time, kept
// across opens with what was written, listed by Check (neither a problem
// nor garbage), and removed by GC; anything else under downloads/ is
// garbage.
func TestDownload_CheckAndGC(t *testing.T) {
	s := newTestStore(t)
	d := sha([]byte("a blob"))
	dl, err := s.OpenDownload(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenDownload(d); !errors.Is(err, ErrDownloadBusy) {
		t.Errorf("a second open of a held download: %v, want ErrDownloadBusy", err)
	}
	dl.Write([]byte("a b"))
	if err := dl.Keep(); err != nil {
		t.Fatal(err)
	}
	dl, err = s.OpenDownload(d)
	if err != nil || dl.Size() != 3 {
		t.Fatalf("reopened download: %v, %d bytes, want 3", err, dl.Size())
	}
	dl.Write([]byte("lob"))
	if err := dl.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(s.downloadsDir(), d.Encoded())); err != nil || string(b) != "a blob" {
		t.Errorf("download holds %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(s.downloadsDir(), "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := checkOK(t, s, "with a download")
	if len(r.Downloads) != 1 || !strings.HasPrefix(r.Downloads[0], string(d)+" (6 bytes)") {
		t.Errorf("check's downloads: %q", r.Downloads)
	}
	if len(r.Garbage) != 1 || !strings.Contains(r.Garbage[0], "stray") {
		t.Errorf("check's garbage: %q", r.Garbage)
	}
	rep, err := s.GC()
	if err != nil || rep.Downloads != 2 {
		t.Fatalf("gc: %+v, %v", rep, err)
	}
	if r := checkOK(t, s, "after gc"); len(r.Downloads) != 0 {
		t.Errorf("downloads after gc: %q", r.Downloads)
	}
}

// TestDownload_BrokenIsNotKept: a download whose write failed says so, and
// Keep removes it rather than keep bytes that are not the blob's beginning,
// and the next pull starts a fresh one.
func TestDownload_BrokenIsNotKept(t *testing.T) {
	s := newTestStore(t)
	d := sha([]byte("a blob"))
	dl, err := s.OpenDownload(d)
	if err != nil {
		t.Fatal(err)
	}
	dl.f.Close() // the next write fails
	dl.Write([]byte("a b"))
	if !dl.Broken() {
		t.Fatal("a download whose write failed is not Broken")
	}
	dl.Keep()
	if _, err := os.Stat(filepath.Join(s.downloadsDir(), d.Encoded())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a broken download was kept: %v", err)
	}
	dl, err = s.OpenDownload(d)
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Discard()
	if dl.Broken() || dl.Size() != 0 {
		t.Errorf("a new download: broken %v, %d bytes, want a fresh one", dl.Broken(), dl.Size())
	}
}
