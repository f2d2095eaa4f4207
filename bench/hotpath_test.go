package bench

// Hot-path microbenchmarks, benchstat-comparable (see RESULTS.md for how to
// compare two revisions). The store's lookup and readdir are
// layerstore.BenchmarkTree; these add the object open and reads through a
// real FUSE mount.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/layerstore"
)

// hotImage stores an image of n files of size bytes each (plus one file of
// big bytes when big > 0) and returns the store and its tree.
func hotImage(b testing.TB, n, size int, big int64) (*layerstore.Store, *layerstore.Tree) {
	b.Helper()
	s, err := layerstore.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	c := newContent(int64(size))
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("d%02d/f%05d", i%50, i)
		data := c.bytes(p, size)
		tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(baseTime, 0)})
		tw.Write(data)
	}
	if big > 0 {
		tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: big, ModTime: time.Unix(baseTime, 0)})
		io.Copy(tw, io.LimitReader(bigStream(1), big))
	}
	tw.Close()
	data := buf.Bytes()
	_, err = s.NewImage(context.Background(), layerstore.NewImageOptions{
		Layers: []layerstore.NewLayer{{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}},
		Names:  []string{"hot:1"},
	})
	if err != nil {
		b.Fatal(err)
	}
	_, tree, err := s.ImageTree("hot:1")
	if err != nil {
		b.Fatal(err)
	}
	return s, tree
}

// BenchmarkObjectOpen is what a strata read costs below FUSE: open an
// object O_RDONLY, read it whole, close it.
func BenchmarkObjectOpen(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			s, tree := hotImage(b, 1000, size, 0)
			var paths []string
			tree.Walk(func(e *layerstore.Entry) error {
				if e.Type == layerstore.TypeReg {
					paths = append(paths, s.ObjectPath(e.Digest))
				}
				return nil
			})
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f, err := os.OpenFile(paths[i%len(paths)], os.O_RDONLY, 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := drain(f, buf); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}

// BenchmarkFUSERead reads through a real strata mount, served in this
// process: small files (open, read, close; the page cache warm) and a
// sequential 64 MiB read, with passthrough on and off. Skipped where FUSE
// mounts are not possible.
func BenchmarkFUSERead(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for FUSE mounts with passthrough")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skip("no /dev/fuse")
	}
	const bigSize = 64 << 20
	s, tree := hotImage(b, 1000, 4<<10, bigSize)
	var files []string
	tree.Walk(func(e *layerstore.Entry) error {
		if e.Type == layerstore.TypeReg && e.Path != "big" {
			files = append(files, e.Path)
		}
		return nil
	})
	for _, pt := range []bool{true, false} {
		mnt := b.TempDir()
		srv, err := fs.Mount(mnt, tree, &fs.Options{ReadOnly: true, Objects: s.ObjectPath, Passthrough: pt, FsName: "strata-bench"})
		if err != nil {
			b.Skipf("fs.Mount: %v", err)
		}
		b.Run(fmt.Sprintf("small/passthrough=%v", pt), func(b *testing.B) {
			buf := make([]byte, 64<<10)
			if err := readFiles(context.Background(), mnt, files); err != nil { // warm
				b.Fatal(err)
			}
			b.SetBytes(4 << 10)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f, err := os.Open(filepath.Join(mnt, files[i%len(files)]))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := drain(f, buf); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
		b.Run(fmt.Sprintf("seq/passthrough=%v", pt), func(b *testing.B) {
			p := filepath.Join(mnt, "big")
			if err := seqRead(p, bigSize); err != nil { // warm
				b.Fatal(err)
			}
			b.SetBytes(bigSize)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := seqRead(p, bigSize); err != nil {
					b.Fatal(err)
				}
			}
		})
		if err := srv.Unmount(); err != nil {
			b.Fatal(errors.Join(err, unmountDir(mnt)))
		}
	}
}
