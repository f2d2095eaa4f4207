package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A context tar cannot write outside its directory: not through a symlink
// it made to a directory outside, nor by a symlink it made as a file's name.
func TestUntarContext_StaysInside(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		entries []tar.Header
	}{
		{"symlinked parent", []tar.Header{
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "a/victim", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6},
		}},
		{"relative symlinked parent", []tar.Header{
			{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../" + outside},
			{Name: "up/victim", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6},
		}},
		{"symlinked file", []tar.Header{
			{Name: "f", Typeflag: tar.TypeSymlink, Linkname: victim},
			{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range tc.entries {
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
				if h.Size > 0 {
					tw.Write([]byte("owned\n"))
				}
			}
			tw.Close()
			err := untarContext(&buf, t.TempDir())
			if err == nil {
				t.Error("a context that writes through a symlink out of itself was unpacked")
			}
			if b, _ := os.ReadFile(victim); string(b) != "host\n" {
				t.Fatalf("the file outside the context now holds %q", b)
			}
		})
	}
}
