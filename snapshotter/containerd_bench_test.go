package snapshotter_test

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/layerstore"
)

// peerSnapshotters are measured beside strata in the same containerd.
var peerSnapshotters = []string{"strata", "overlayfs", "native"}

// BenchmarkContainerd measures what issue 12 asks of a snapshotter, strata
// beside containerd's own overlayfs and native snapshotters in one
// containerd:
//
//   - import: ctr images import of 10 similar images (each one layer: the
//     fixture's busybox rootfs plus a file of its own), all 10 per
//     iteration; the images are removed between iterations, untimed.
//     disk-MB is the snapshotter's directory after the imports (strata's:
//     its store).
//   - run: ctr run --rm IMAGE id true on the demo image.
//
// containerd's content store is filled before, so every snapshotter
// unpacks from the same local blobs. Run it with -count to interleave.
func BenchmarkContainerd(b *testing.B) {
	e := newEnv(b)
	fx := fixtures.Dir(b)
	archives := similarImages(b, filepath.Join(e.dir, "similar"), filepath.Join(fx, "rootfs.tar"), 10)
	for _, a := range archives {
		e.ctr("images", "import", "--no-unpack", a)
	}
	base := map[string]int{}
	for _, sn := range peerSnapshotters {
		e.ctr("images", "import", "--snapshotter", sn, filepath.Join(fx, "demo.docker.tar"))
		base[sn] = e.countSnapshots(sn)
	}
	for _, sn := range peerSnapshotters {
		b.Run("import/"+sn, func(b *testing.B) {
			var disk int64
			for b.Loop() {
				b.StopTimer()
				e.removeSimilar(sn, len(archives), base[sn])
				b.StartTimer()
				for _, a := range archives {
					e.ctr("images", "import", "--snapshotter", sn, a)
				}
				b.StopTimer()
				if sn == "strata" {
					e.waitMountsGone()
				}
				du, err := layerstore.DirUsage(e.snapshotterDir(sn))
				if err != nil {
					b.Fatal(err)
				}
				disk = du
				b.StartTimer()
			}
			b.ReportMetric(float64(disk)/1e6, "disk-MB")
		})
	}
	for _, sn := range peerSnapshotters {
		b.Run("run/"+sn, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				e.ctr("run", "--rm", "--snapshotter", sn, image, fmt.Sprintf("bench-%s-%d", sn, i), "true")
			}
		})
	}
}

// removeSimilar removes the similar images, stores their blobs again
// without unpacking, and waits until containerd's garbage collector has
// taken sn back to base snapshots.
func (e *env) removeSimilar(sn string, n, base int) {
	e.t.Helper()
	for i := range n {
		_, _ = e.ctrErr("images", "rm", "--sync", similarName(i))
	}
	for i := range n {
		e.ctr("images", "import", "--no-unpack", filepath.Join(e.dir, "similar", fmt.Sprintf("%d.tar", i)))
	}
	deadline := time.Now().Add(time.Minute)
	for e.countSnapshots(sn) > base {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s still has %d snapshots a minute after the images went, want %d", sn, e.countSnapshots(sn), base)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countSnapshots is how many snapshots ctr snapshots ls names in sn.
func (e *env) countSnapshots(sn string) int {
	return len(strings.Split(strings.TrimSpace(e.ctr("snapshots", "--snapshotter", sn, "ls")), "\n")) - 1
}

// waitMountsGone waits (up to a minute) until the store has no mount left:
// a commit removes the mount of the unpacked layer after it answers.
func (e *env) waitMountsGone() {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		left, err := os.ReadDir(filepath.Join(e.store, "mounts"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			e.t.Fatal(err)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d mounts left in the store a minute after the imports", len(left))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshotterDir is where sn keeps its snapshots.
func (e *env) snapshotterDir(sn string) string {
	if sn == "strata" {
		return e.store
	}
	return filepath.Join(e.dir, "root", "io.containerd.snapshotter.v1."+sn)
}

func similarName(i int) string { return fmt.Sprintf("docker.io/library/similar%d:latest", i) }

// similarImages writes n docker archives of one-layer images: the rootfs
// tar plus a file of each image's own.
func similarImages(tb testing.TB, dir, rootfs string, n int) []string {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("%d.tar", i))
		if err := writeSimilar(p, rootfs, i); err != nil {
			tb.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func writeSimilar(p, rootfs string, i int) error {
	var layer strings.Builder
	lw := tar.NewWriter(&layer)
	f, err := os.Open(rootfs)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := lw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(lw, tr); err != nil {
			return err
		}
	}
	own := fmt.Sprintf("image %d\n", i)
	if err := lw.WriteHeader(&tar.Header{Name: "image-id", Mode: 0o644, Size: int64(len(own)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	if _, err := lw.Write([]byte(own)); err != nil {
		return err
	}
	if err := lw.Close(); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(layer.String()))
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return err
	}
	cfgSum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": cfgName, "RepoTags": []string{strings.TrimPrefix(similarName(i), "docker.io/library/")},
		"Layers": []string{hex.EncodeToString(sum[:]) + "/layer.tar"},
	}})
	if err != nil {
		return err
	}
	out, err := os.Create(p)
	if err != nil {
		return err
	}
	aw := tar.NewWriter(out)
	for _, file := range []struct {
		name string
		body []byte
	}{{cfgName, cfg}, {hex.EncodeToString(sum[:]) + "/layer.tar", []byte(layer.String())}, {"manifest.json", manifest}} {
		if err := aw.WriteHeader(&tar.Header{Name: file.name, Mode: 0o644, Size: int64(len(file.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return errors.Join(err, out.Close())
		}
		if _, err := aw.Write(file.body); err != nil {
			return errors.Join(err, out.Close())
		}
	}
	return errors.Join(aw.Close(), out.Close())
}
