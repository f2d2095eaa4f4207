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

// BenchmarkOpenFileOps runs truncations and setxattrs by path on files that
// are open, in parallel, each goroutine on a file of its own, with an open
// and close of that file beside each: on the mount, the server applies them
// through a descriptor of an open handle (the table of open files, which
// opens and closes change), and one slow call on one file must not hold up
// the others. The same on a plain directory is the peer. truncate frees 4
// MiB that a fallocate gave the file just before.
func BenchmarkOpenFileOps(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for a writable mount")
	}
	base := b.TempDir()
	mnt, upper, plain := filepath.Join(base, "mnt"), filepath.Join(base, "upper"), filepath.Join(base, "plain")
	for _, d := range []string{mnt, upper, plain} {
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
	srv, err := Mount(mnt, tree, &Options{Upper: upper, Writeback: true, Objects: func(d digest.Digest) string { return filepath.Join(base, d.Encoded()) }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			b.Errorf("Unmount: %v", err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	ops := []struct {
		name string
		op   func(p string, fd int) error
	}{
		{"truncate", func(p string, fd int) error {
			if err := unix.Fallocate(fd, 0, 0, 4<<20); err != nil {
				return err
			}
			return unix.Truncate(p, 0)
		}},
		{"setxattr", func(p string, fd int) error {
			return unix.Setxattr(p, "user.bench", []byte("0123456789abcdef0123456789abcdef"), 0)
		}},
	}
	var files atomic.Int64
	for _, o := range ops {
		for _, fsys := range []struct{ name, dir string }{{"plain", plain}, {"strata", mnt}} {
			b.Run(o.name+"/"+fsys.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					p := filepath.Join(fsys.dir, fmt.Sprintf("f%d", files.Add(1)))
					fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
					if err != nil {
						b.Error(err)
						return
					}
					defer unix.Close(fd)
					for pb.Next() {
						if err := o.op(p, fd); err != nil {
							b.Error(err)
							return
						}
						g, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
						if err != nil {
							b.Error(err)
							return
						}
						unix.Close(g)
					}
				})
			})
		}
	}
}
