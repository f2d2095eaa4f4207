package layerstore

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// benchLayer writes a layer tar of n files (sizes spread from 100 B to
// 256 KiB, like a distribution's /usr) in dirs directories.
func benchLayer(b testing.TB, path string, n, dirs int, seed int64) int64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	rnd := rand.New(rand.NewSource(seed))
	buf := make([]byte, 256<<10)
	rnd.Read(buf)
	for d := 0; d < dirs; d++ {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%04d/", d), Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1, 0)})
	}
	for i := 0; i < n; i++ {
		size := 100 << (rnd.Intn(12)) // 100 B .. 200 KiB
		if size > len(buf) {
			size = len(buf)
		}
		off := rnd.Intn(len(buf) - size + 1)
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%04d/f%06d-%d", i%dirs, i, seed), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size), ModTime: time.Unix(1, 0)})
		tw.Write(buf[off : off+size])
	}
	tw.Close()
	st, _ := f.Stat()
	return st.Size()
}

// BenchmarkImport compares ingest of one layer into a fresh store with tar -x
// of the same layer into a fresh directory, on the same file system.
func BenchmarkImport(b *testing.B) {
	dir := b.TempDir()
	layer := filepath.Join(dir, "layer.tar")
	size := benchLayer(b, layer, 5000, 100, 1)
	b.Run("tar-x", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			out := filepath.Join(dir, fmt.Sprintf("x%d", i))
			os.MkdirAll(out, 0o755)
			b.StartTimer()
			if o, err := exec.Command("tar", "-xf", layer, "-C", out).CombinedOutput(); err != nil {
				b.Fatalf("tar: %v %s", err, o)
			}
			b.StopTimer()
			os.RemoveAll(out)
			b.StartTimer()
		}
	})
	b.Run("strata", func(b *testing.B) {
		b.SetBytes(size)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			root := filepath.Join(dir, fmt.Sprintf("s%d", i))
			s, err := Open(root, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			_, err = s.NewImage(context.Background(), NewImageOptions{Layers: []NewLayer{{Open: fileOpener(layer)}}})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(root)
			b.StartTimer()
		}
	})
}

func fileOpener(p string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return os.Open(p) }
}

// BenchmarkTree measures the merged tree at 1, 10, 100 and 500 layers holding
// the same 20,000 files in 1,000 directories: loading it (what a mount
// does once), lookups and readdir. The goal is flat.
func BenchmarkTree(b *testing.B) {
	const files, dirs = 20000, 1000
	for _, depth := range []int{1, 10, 100, 500} {
		s, err := Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		var layers []NewLayer
		per := files / depth
		for l := 0; l < depth; l++ {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for i := 0; i < per; i++ {
				n := l*per + i
				body := []byte(fmt.Sprintf("file %d", n))
				tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%04d/f%06d", n%dirs, n), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
				tw.Write(body)
			}
			tw.Close()
			data := buf.Bytes()
			layers = append(layers, NewLayer{Open: opener(data), History: ocispec.History{CreatedBy: "layer"}})
		}
		if _, err := s.NewImage(context.Background(), NewImageOptions{Layers: layers, Names: []string{"deep:1"}}); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("load/layers=%d", depth), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_, t, err := s.MountTree("deep:1")
				if err != nil {
					b.Fatal(err)
				}
				t.Close()
			}
		})
		_, tree, err := s.ImageTree("deep:1")
		if err != nil {
			b.Fatal(err)
		}
		if tree.Len() != files+dirs+1 {
			b.Fatalf("tree has %d entries, want %d", tree.Len(), files+dirs+1)
		}
		b.Run(fmt.Sprintf("lookup/layers=%d", depth), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				n := i % files
				if _, ok := tree.Lookup(fmt.Sprintf("d%04d/f%06d", n%dirs, n)); !ok {
					b.Fatal("missing")
				}
			}
		})
		b.Run(fmt.Sprintf("readdir/layers=%d", depth), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				d, _ := tree.Lookup(fmt.Sprintf("d%04d", i%dirs))
				if len(tree.DirentsAt(d.Ref())) != files/dirs {
					b.Fatal("short readdir")
				}
			}
		})
	}
}

// BenchmarkRemoveImage removes an image (its own layer and tree go, the
// base layer stays) from a store of n images sharing one base layer: an
// image is added, untimed, and removed, timed. The goal is flat in n.
func BenchmarkRemoveImage(b *testing.B) {
	for _, n := range []int{20, 200, 2000} {
		b.Run(fmt.Sprintf("images=%d", n), func(b *testing.B) {
			s, err := Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			var files []tarEntry
			for i := 0; i < 200; i++ {
				files = append(files, tarEntry{name: fmt.Sprintf("usr/lib/f%03d", i), body: fmt.Sprintf("base file %d", i)})
			}
			base, err := importLayers(b, s, "base:1", makeTar(b, files...))
			if err != nil {
				b.Fatal(err)
			}
			child := func(name string) {
				_, err := s.NewImage(context.Background(), NewImageOptions{Base: &base, Names: []string{name},
					Layers: []NewLayer{{Open: opener(makeTar(b, tarEntry{name: "app/" + name, body: name}))}}})
				if err != nil {
					b.Fatal(err)
				}
			}
			for i := 1; i < n; i++ {
				child(fmt.Sprintf("img:%d", i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				child("victim:1")
				b.StartTimer()
				rep, err := s.RemoveImage("victim:1", false)
				if err != nil || rep.DeletedImages != 1 || len(rep.Deleted) != 2 {
					b.Fatalf("rmi: %+v %v", rep, err)
				}
			}
		})
	}
}

// BenchmarkStoreOf times what should cost what it touches, not what the
// store holds, on stores of n images (each a layer of 100 files of its own
// on a shared base: 100·n objects), each with a tag and a build cache
// entry: an import of a new 100-file layer (removed after, untimed),
// ResolveImage of one tag, CacheGet of one key, Images (which lists all n:
// it grows with n, by design), and rmi of an image with a cache entry
// (added again, untimed). The goal is flat in n, Images aside.
func BenchmarkStoreOf(b *testing.B) {
	layer := func(tag string, files int) []byte {
		var es []tarEntry
		for i := range files {
			es = append(es, tarEntry{name: fmt.Sprintf("%s/f%03d", tag, i), body: fmt.Sprintf("%s file %d", tag, i)})
		}
		return makeTar(b, es...)
	}
	for _, n := range []int{10, 1000} {
		s, err := Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		base, err := importLayers(b, s, "base:1", layer("base", 100))
		if err != nil {
			b.Fatal(err)
		}
		child := func(name string) {
			b.Helper()
			if _, err := s.NewImage(context.Background(), NewImageOptions{Base: &base, Names: []string{name}, CacheKey: "key-" + name,
				Layers: []NewLayer{{Open: opener(layer(name, 100))}}}); err != nil {
				b.Fatal(err)
			}
		}
		for i := range n {
			child(fmt.Sprintf("img:%d", i))
		}
		b.Run(fmt.Sprintf("import/images=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("new:%d", i)
				data := layer(name, 100)
				b.StartTimer()
				if _, err := importLayers(b, s, name, data); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if _, err := s.RemoveImage(name, false); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("resolve/images=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if img, err := s.ResolveImage("img:7"); err != nil || len(img.RepoTags) != 1 {
					b.Fatal(img.RepoTags, err)
				}
			}
		})
		b.Run(fmt.Sprintf("cacheget/images=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if img, err := s.CacheGet("key-img:7"); err != nil || len(img.RepoTags) != 1 {
					b.Fatal(img.RepoTags, err)
				}
			}
		})
		b.Run(fmt.Sprintf("images/images=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if imgs, err := s.Images(); err != nil || len(imgs) != n+1 {
					b.Fatal(len(imgs), err)
				}
			}
		})
		b.Run(fmt.Sprintf("rmi/images=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				child("victim:1")
				b.StartTimer()
				if rep, err := s.RemoveImage("victim:1", false); err != nil || rep.DeletedImages != 1 {
					b.Fatalf("rmi: %+v %v", rep, err)
				}
			}
		})
		mustCheck(b, s)
	}
}
