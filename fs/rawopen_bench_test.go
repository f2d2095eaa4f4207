package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// BenchmarkRawOpenParallel opens, reads a byte of and closes lower files
// in parallel, each goroutine its own files: on a mount every open is a
// raw open (rawfile.go), answered under the promotion lock. The same files
// in a plain directory are the peer. "beside-promotions" has a goroutine
// promote (chmod) other lower files meanwhile, each promotion holding the
// lock through a lookup of the bridge and a copy-up, while its spare files
// last (promotions/op says how many ran; a run that used them all says so).
func BenchmarkRawOpenParallel(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to mount")
	}
	const files, spares = 256, 20000
	base := b.TempDir()
	objects, plain := filepath.Join(base, "objects"), filepath.Join(base, "plain")
	for _, d := range []string{objects, plain, filepath.Join(plain, "d")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	entries := []*layerstore.Entry{
		{Path: "d", Type: layerstore.TypeDir, Mode: 0o755},
		{Path: "p", Type: layerstore.TypeDir, Mode: 0o755},
	}
	for i := range files {
		c := []byte(fmt.Sprintf("file %d\n", i))
		d := writeTestObject(b, objects, c)
		name := fmt.Sprintf("d/f%03d", i)
		entries = append(entries, &layerstore.Entry{Path: name, Type: layerstore.TypeReg, Mode: 0o644, Size: int64(len(c)), Digest: d})
		if err := os.WriteFile(filepath.Join(plain, name), c, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	spare := writeTestObject(b, objects, []byte("spare\n"))
	for i := range spares {
		entries = append(entries, &layerstore.Entry{Path: fmt.Sprintf("p/s%05d", i), Type: layerstore.TypeReg, Mode: 0o644, Size: 6, Digest: spare})
	}
	sortEntries(entries)
	tree, err := layerstore.BuildTree(digest.FromString(b.Name()), entries)
	if err != nil {
		b.Fatal(err)
	}
	mnt, upper := filepath.Join(base, "mnt"), filepath.Join(base, "upper")
	for _, d := range []string{mnt, upper} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := Mount(mnt, tree, &Options{Upper: upper, Objects: func(d digest.Digest) string { return filepath.Join(objects, d.Encoded()) }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			b.Errorf("Unmount: %v", err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	var promoted atomic.Int64
	for _, fsys := range []struct{ name, dir string }{{"plain", plain}, {"strata", mnt}, {"strata-beside-promotions", mnt}} {
		b.Run(fsys.name, func(b *testing.B) {
			stop := make(chan struct{})
			done := make(chan struct{})
			var made atomic.Int64 // promotions during this run
			ranOut := false
			if fsys.name == "strata-beside-promotions" {
				go func() {
					defer close(done)
					for {
						select {
						case <-stop:
							return
						default:
						}
						i := promoted.Add(1)
						if i >= spares {
							ranOut = true // each spare is promoted once: none is raw again
							return
						}
						_ = os.Chmod(filepath.Join(mnt, fmt.Sprintf("p/s%05d", i)), 0o600)
						made.Add(1)
					}
				}()
			} else {
				close(done)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := next.Add(1)
				buf := make([]byte, 1)
				for i := int64(0); pb.Next(); i++ {
					p := filepath.Join(fsys.dir, fmt.Sprintf("d/f%03d", (g*31+i)%files))
					fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := unix.Read(fd, buf); err != nil {
						b.Error(err)
					}
					unix.Close(fd)
				}
			})
			b.StopTimer()
			close(stop)
			<-done
			if fsys.name == "strata-beside-promotions" {
				b.ReportMetric(float64(made.Load())/float64(b.N), "promotions/op")
				if ranOut {
					b.Logf("the %d spare files ran out during this run: it ran beside promotions only for its first %d", spares, made.Load())
				}
			}
		})
	}
}
