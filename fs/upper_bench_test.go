package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// BenchmarkUpperOps measures requests the server answers from the upper
// dir, in an upper directory 8 levels deep below a lower one: getxattr
// (the kernel caches no answer), create+unlink, chmod, and a listing of 100
// upper files. Served in this process.
func BenchmarkUpperOps(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for a writable mount")
	}
	base := b.TempDir()
	mnt, upper := filepath.Join(base, "mnt"), filepath.Join(base, "upper")
	for _, d := range []string{mnt, upper} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	tree, err := layerstore.BuildTree(digest.FromString(b.Name()), []*layerstore.Entry{
		{Path: "lower", Type: layerstore.TypeDir, Mode: 0o755},
	})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := Mount(mnt, tree, &Options{Upper: upper, Objects: func(d digest.Digest) string { return filepath.Join(base, d.Encoded()) }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			b.Errorf("Unmount: %v", err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	parts := []string{"lower"}
	for i := range 8 {
		parts = append(parts, fmt.Sprintf("level%d", i))
	}
	dir := filepath.Join(mnt, strings.Join(parts, "/"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := unix.Lsetxattr(f, "user.x", []byte("1"), 0); err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("g%03d", i)), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("getxattr", func(b *testing.B) {
		buf := make([]byte, 16)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := unix.Lgetxattr(f, "user.x", buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("chmod", func(b *testing.B) {
		b.ReportAllocs()
		mode := uint32(0o600)
		for b.Loop() {
			mode ^= 0o040
			if err := unix.Chmod(f, mode); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create-unlink", func(b *testing.B) {
		p := filepath.Join(dir, "new")
		b.ReportAllocs()
		for b.Loop() {
			fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
			if err := unix.Unlink(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("readdir100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			// A new file first, so the kernel's cached listing is dropped.
			if err := os.WriteFile(filepath.Join(dir, "h"), nil, 0o644); err != nil {
				b.Fatal(err)
			}
			if _, err := os.ReadDir(dir); err != nil {
				b.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "h")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
