package session_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/session"
)

// A commit right after writes (a file still open, a file renamed after its
// writes, many small files) holds every byte of them, whether the kernel
// still caches them (the writeback cache) or wrote them to the upper files
// itself (passthrough, the default), and the sync before it sends no FSYNC:
// the upper files need the kernel's writes, not the host disk (the commit
// makes the layer durable itself).
func TestSession_Commit_SeesAllData(t *testing.T) {
	for _, mode := range []struct {
		name string
		o    session.Options
	}{{"passthrough", session.Options{Trace: true}}, {"writeback", session.Options{Trace: true, NoPassthrough: true}}} {
		t.Run(mode.name, func(t *testing.T) { testCommitSeesAllData(t, mode.o, mode.name == "writeback") })
	}
}

func testCommitSeesAllData(t *testing.T, o session.Options, writeback bool) {
	st, dir, s := startDemo(t, o)
	ctx := context.Background()
	if writeback && !s.Writeback() {
		t.Skip("the kernel offers no writeback cache")
	}
	if !writeback && !s.Passthrough() {
		t.Skip("the kernel offers no FUSE passthrough here")
	}
	want := map[string][]byte{}
	// 16 MiB in unaligned small writes, left open across the commit.
	open, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	chunk := bytes.Repeat([]byte("0123456789abcdefghij"), 200) // 4000 bytes
	var big []byte
	for i := 0; len(big) < 16<<20; i++ {
		c := append([]byte(fmt.Sprintf("%08d", i)), chunk...)
		if _, err := open.Write(c); err != nil {
			t.Fatal(err)
		}
		big = append(big, c...)
	}
	want["big"] = big
	for i := range 200 {
		name := fmt.Sprintf("small/%03d", i)
		if i == 0 {
			if err := os.Mkdir(filepath.Join(dir, "small"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		b := bytes.Repeat([]byte{byte(i)}, 1000+i)
		mustWrite(t, filepath.Join(dir, name), string(b))
		want[name] = b
	}
	mustWrite(t, filepath.Join(dir, "before-rename"), "renamed after its writes\n")
	if err := os.Rename(filepath.Join(dir, "before-rename"), filepath.Join(dir, "renamed")); err != nil {
		t.Fatal(err)
	}
	want["renamed"] = []byte("renamed after its writes\n")
	s.Trace(true)

	if _, err := s.Commit(ctx, session.CommitOptions{Names: []string{"demo:written"}}); err != nil {
		t.Fatal(err)
	}
	for _, op := range s.Trace(false) {
		if op.Op == "FSYNC" {
			t.Errorf("the sync before the commit sent %d FSYNCs (an fdatasync of an upper file each)", op.Count)
		}
	}
	_, tree, err := st.ImageTree("demo:written")
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	for name, b := range want {
		e, ok := tree.Lookup(name)
		if !ok {
			t.Errorf("%s is not in the committed image", name)
			continue
		}
		if e.Size != int64(len(b)) || e.Digest != digest.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(b))) {
			t.Errorf("%s in the committed image: %d bytes, %s; written %d bytes", name, e.Size, e.Digest, len(b))
		}
	}
}

// BenchmarkCommit_LargeTopLayer commits a top layer of 1,000 files of
// 128 KiB (125 MiB) written just before, on a mount of its own each time: what a big RUN step of a build leaves.
// commit is the whole commit, its sync included; sync the sync alone.
func BenchmarkCommit_LargeTopLayer(b *testing.B) {
	needFUSE(b)
	st := openStore(b)
	ctx := context.Background()
	for _, sub := range []string{"commit", "sync"} {
		b.Run(sub, func(b *testing.B) {
			body := bytes.Repeat([]byte("strata"), 128<<10/6)
			b.SetBytes(int64(1000 * len(body)))
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				dir := mountDir(b)
				s, err := session.Start(ctx, st, "demo", dir, session.Options{})
				if err != nil {
					b.Fatal(err)
				}
				for j := range 1000 {
					// Each file its own content: nothing is deduplicated away.
					copy(body, fmt.Sprintf("%s%d/%d", sub, i, j))
					if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(j)), body, 0o644); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if sub == "sync" {
					err = fs.SyncMount(dir, session.UpperDir(st, s.ID()))
				} else {
					_, err = s.Commit(ctx, session.CommitOptions{})
				}
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
