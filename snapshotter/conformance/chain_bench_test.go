package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/snapshots/native"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
)

// peers are the snapshotters the chain benchmark measures side by side:
// strata's server through containerd's proxy client, and containerd's own
// overlayfs and native snapshotters in process.
var peers = []struct {
	name string
	open func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error)
}{
	{"strata", newSnapshotter},
	{"overlayfs", func(_ context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		sn, err := overlay.NewSnapshotter(root)
		if err != nil {
			return nil, nil, err
		}
		return sn, sn.Close, nil
	}},
	{"native", func(_ context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		sn, err := native.NewSnapshotter(root)
		if err != nil {
			return nil, nil, err
		}
		return sn, sn.Close, nil
	}},
}

// openPeer opens a snapshotter of peers in dir, closed when b ends.
func openPeer(ctx context.Context, b *testing.B, open func(context.Context, string) (snapshots.Snapshotter, func() error, error), dir string) snapshots.Snapshotter {
	b.Helper()
	sn, closeFn, err := open(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := closeFn(); err != nil {
			b.Error(err)
		}
	})
	return sn
}

// BenchmarkPrepareChain measures what a container start asks of a
// snapshotter on an image of depth layers: Prepare on the chain's top, the
// mount of what it returns (the root file system is ready), then the
// unmount and Remove. The chain is built once per snapshotter through the
// same API (Prepare, a file written, Commit, per layer). The -ms metrics
// split an iteration into its four steps.
func BenchmarkPrepareChain(b *testing.B) {
	needRoot(b)
	for _, depth := range []int{1, 10, 100} {
		for _, p := range peers {
			b.Run(fmt.Sprintf("depth=%d/%s", depth, p.name), func(b *testing.B) {
				ctx := namespaces.WithNamespace(context.Background(), "bench")
				root := b.TempDir()
				sn := openPeer(ctx, b, p.open, filepath.Join(root, "sn"))
				top := buildChain(ctx, b, sn, root, depth)
				target := filepath.Join(root, "rootfs")
				if err := os.Mkdir(target, 0o700); err != nil {
					b.Fatal(err)
				}
				var phase [4]time.Duration // prepare, mount, unmount, remove
				lap := func(i int, t0 time.Time) time.Time {
					now := time.Now()
					phase[i] += now.Sub(t0)
					return now
				}
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					key := fmt.Sprintf("run-%d", i)
					t0 := time.Now()
					ms, err := sn.Prepare(ctx, key, top)
					if err != nil {
						b.Fatal(err)
					}
					t0 = lap(0, t0)
					if err := mount.All(ms, target); err != nil {
						b.Fatal(err)
					}
					if _, err := os.Stat(filepath.Join(target, "f0")); err != nil {
						b.Fatal(err)
					}
					t0 = lap(1, t0)
					if err := mount.UnmountAll(target, 0); err != nil {
						b.Fatal(err)
					}
					t0 = lap(2, t0)
					if err := sn.Remove(ctx, key); err != nil {
						b.Fatal(err)
					}
					lap(3, t0)
				}
				for i, unit := range []string{"prepare-ms", "mount-ms", "unmount-ms", "remove-ms"} {
					b.ReportMetric(float64(phase[i].Microseconds())/1000/float64(b.N), unit)
				}
			})
		}
	}
}

// buildChain commits depth layers, each adding one file, and returns the
// top's name.
func buildChain(ctx context.Context, b *testing.B, sn snapshots.Snapshotter, root string, depth int) string {
	b.Helper()
	work := filepath.Join(root, "build")
	if err := os.Mkdir(work, 0o700); err != nil {
		b.Fatal(err)
	}
	parent := ""
	for i := range depth {
		key, name := fmt.Sprintf("build-%d", i), fmt.Sprintf("layer-%d", i)
		ms, err := sn.Prepare(ctx, key, parent)
		if err != nil {
			b.Fatal(err)
		}
		if err := mount.All(ms, work); err != nil {
			b.Fatal(err)
		}
		werr := os.WriteFile(filepath.Join(work, fmt.Sprintf("f%d", i)), []byte(name), 0o644)
		if err := mount.UnmountAll(work, 0); err != nil {
			b.Fatal(err)
		}
		if werr != nil {
			b.Fatal(werr)
		}
		if err := sn.Commit(ctx, name, key); err != nil {
			b.Fatal(err)
		}
		parent = name
	}
	return parent
}

func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: FUSE, overlay and bind mounts")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		tb.Skip("no /dev/fuse")
	}
}

// BenchmarkUnpackLayer is what containerd's unpacker does with one layer
// of an import or pull: Prepare, mount, apply the layer tar with
// containerd's own archive.Apply, unmount, Commit (then, untimed, Remove).
// The layer is the fixture's busybox rootfs (STRATA_FIXTURES' rootfs.tar)
// with a file of each iteration's own. The -ms metrics split an iteration.
func BenchmarkUnpackLayer(b *testing.B) {
	needRoot(b)
	fx := os.Getenv("STRATA_FIXTURES")
	layer, err := os.ReadFile(filepath.Join(fx, "rootfs.tar"))
	if err != nil {
		b.Skipf("the fixture's rootfs.tar (set STRATA_FIXTURES): %v", err)
	}
	for _, p := range peers {
		b.Run(p.name, func(b *testing.B) {
			ctx := namespaces.WithNamespace(context.Background(), "bench")
			root := b.TempDir()
			sn := openPeer(ctx, b, p.open, filepath.Join(root, "sn"))
			target := filepath.Join(root, "rootfs")
			if err := os.Mkdir(target, 0o700); err != nil {
				b.Fatal(err)
			}
			var phase [3]time.Duration // prepare, apply (mount to unmount), commit
			lap := func(i int, t0 time.Time) time.Time {
				now := time.Now()
				phase[i] += now.Sub(t0)
				return now
			}
			for i := 0; b.Loop(); i++ {
				key, name := fmt.Sprintf("extract-%d", i), fmt.Sprintf("layer-%d", i)
				t0 := time.Now()
				ms, err := sn.Prepare(ctx, key, "")
				if err != nil {
					b.Fatal(err)
				}
				t0 = lap(0, t0)
				if err := mount.All(ms, target); err != nil {
					b.Fatal(err)
				}
				_, aerr := archive.Apply(ctx, target, bytes.NewReader(layer))
				if aerr == nil {
					aerr = os.WriteFile(filepath.Join(target, "own"), []byte(name), 0o644)
				}
				if err := mount.UnmountAll(target, 0); err != nil {
					b.Fatal(err)
				}
				if aerr != nil {
					b.Fatal(aerr)
				}
				t0 = lap(1, t0)
				if err := sn.Commit(ctx, name, key); err != nil {
					b.Fatal(err)
				}
				lap(2, t0)
				b.StopTimer()
				if err := sn.Remove(ctx, name); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			for i, unit := range []string{"prepare-ms", "apply-ms", "commit-ms"} {
				b.ReportMetric(float64(phase[i].Microseconds())/1000/float64(b.N), unit)
			}
		})
	}
}
