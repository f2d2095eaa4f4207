package fs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestFS_Backing_RefusedFileSystem: on a read-only passthrough mount whose
// objects are on two file systems, one that the kernel refuses as backing
// files (overlayfs, as deep as the stacking depth allows), a large file of
// that one is read through the server, and the others still pass through:
// go-fuse turns passthrough off for the whole mount at the first backing
// file the kernel refuses.
func TestFS_Backing_RefusedFileSystem(t *testing.T) {
	contents := map[string]string{}
	img := newTestImage(t, func(b *layerBuilder) {
		b.dir("a", 0o755).dir("b", 0o755).dir("c", 0o755)
		for _, p := range []string{"a/big", "b/big", "c/big"} {
			contents[p] = strings.Repeat(p+"\n", (2<<20)/len(p+"\n"))
			b.file(p, 0o644, contents[p])
		}
	})
	// b/big's object on overlayfs.
	lower := t.TempDir()
	bd := digest.FromString(contents["b/big"])
	if err := os.WriteFile(filepath.Join(lower, bd.Encoded()), []byte(contents["b/big"]), 0o444); err != nil {
		t.Fatal(err)
	}
	ovl := mountOverlay(t, lower)
	objects := func(d digest.Digest) string {
		if d == bd {
			return filepath.Join(ovl, d.Encoded())
		}
		return img.objectPath(d)
	}
	m := mountTree(t, img.tree, objects, mountOpts{readOnly: true, passthrough: true, trace: true})
	if !m.srv.Passthrough() {
		t.Skipf("no passthrough here: %s", m.logs.String())
	}
	for _, c := range []struct {
		path  string
		reads bool
	}{{"a/big", false}, {"b/big", true}, {"c/big", false}, {"a/big", false}} {
		m.srv.Trace(true)
		if got := mustRead(t, m.p(c.path)); got != contents[c.path] {
			t.Fatalf("%s: %d bytes, want %d", c.path, len(got), len(contents[c.path]))
		}
		if n := traceOf(m, "READ"); (n > 0) != c.reads {
			t.Errorf("reading %s sent %d READs; want them: %v (passthrough %v)", c.path, n, c.reads, !c.reads)
		}
	}
	if !strings.Contains(m.logs.String(), "refuses files of this file system") {
		t.Errorf("the server log does not say why b/big is not passed through:\n%s", m.logs.String())
	}
}
