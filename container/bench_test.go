package container

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/strata-dev/strata/internal/runctest"
)

// BenchmarkRun times a whole `run --rm IMAGE true` (create: lease and top
// layer; run: mount, spec, runc, record; remove) against runc alone on a
// plain directory holding the same root file system, in one run: the cost
// strata adds to a container start.
func BenchmarkRun(b *testing.B) {
	b.Run("strata-run-rm-none", func(b *testing.B) {
		c, _ := openContainers(b)
		ctx := context.Background()
		b.ResetTimer()
		for range b.N {
			rec, err := c.Create(ctx, "demo", CreateOptions{AutoRemove: true, Options: Options{Network: NetworkNone, Entrypoint: []string{"/bin/true"}}})
			if err != nil {
				b.Fatal(err)
			}
			if code, err := c.Run(ctx, rec.ID, Stdio{}, nil); err != nil || code != 0 {
				b.Fatalf("run: %d %v", code, err)
			}
		}
	})
	b.Run("runc-plain-dir", func(b *testing.B) {
		rootfs := testRootfs(b)
		rt := &Runtime{Root: runctest.Root(b)}
		bundle := filepath.Join(b.TempDir(), "bundle")
		spec, err := Spec("bench-plain", rootfs, filepath.Join(bundle, "etc"), demoConfig, Options{Entrypoint: []string{"/bin/true"}})
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteBundle(bundle, spec); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := range b.N {
			var out bytes.Buffer
			if code, err := rt.Run(context.Background(), fmt.Sprintf("bench-plain-%d", i), bundle, Stdio{Stdout: &out, Stderr: &out}, nil); err != nil || code != 0 {
				b.Fatalf("runc: %d %v %s", code, err, out.String())
			}
		}
	})
}
