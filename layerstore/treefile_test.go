package layerstore

import (
	"bytes"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// A tree file whose regular file names anything but a sha256 digest is
// refused when read: the digest becomes a path under objects/, and a
// server must never open "../../etc/shadow" for it.
func TestTreeFile_BadDigestRefused(t *testing.T) {
	good := digest.FromString("x")
	root := &Entry{Path: "", Type: TypeDir, Ino: 1, Mode: 0o755}
	f := &Entry{Path: "f", Type: TypeReg, Ino: 2, Mode: 0o644, Size: 1, Digest: good}
	all := map[string]*Entry{"": root, "f": f}
	kids := map[string][]*Entry{"": {f}}
	b := encodeTree(all, kids, 3)
	if _, err := parseTree(b); err != nil {
		t.Fatalf("a good tree file: %v", err)
	}
	evil := "sha256:../../../../etc/shadow" + strings.Repeat("a", len(good)-len("sha256:../../../../etc/shadow"))
	bad := bytes.Replace(b, []byte(good), []byte(evil), 1)
	if bytes.Equal(bad, b) {
		t.Fatal("the digest is not in the encoded tree")
	}
	if _, err := parseTree(bad); err == nil {
		t.Error("a tree file naming a file by a path-like digest was read")
	}
}
