package layerstore

// Merged trees: inode sharing as tar -x leaves it, and a tree built on a
// base tree equal to one built from scratch.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"
)

// Hard links must share an inode only with what tar -x would link them to.
// The layer-level cases umoci checks in tree_umoci_test.go (TestTree_MatchesUmoci); here the
// invariant every tree must keep: one inode, one type, one content.
func TestTree_HardLinks_OneInodeOneContent(t *testing.T) {
	cases := map[string][]tarEntry{
		"TargetRewritten": {{name: "a", body: "old"}, {name: "b", typ: tar.TypeLink, link: "a"}, {name: "a", body: "new"}},
		"TargetBecomesDir": {{name: "a", body: "old"}, {name: "b", typ: tar.TypeLink, link: "a"},
			{name: "a/", typ: tar.TypeDir}, {name: "a/in", body: "in"}},
		"TargetBecomesSymlink": {{name: "a", body: "old"}, {name: "b", typ: tar.TypeLink, link: "a"}, {name: "a", typ: tar.TypeSymlink, link: "b"}},
	}
	for name, ents := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := Open(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			img, err := importLayers(t, s, "", makeTar(t, ents...))
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			checkOK(t, s, "after import")
			_, tree, err := s.ImageTree(string(img.ID))
			if err != nil {
				t.Fatal(err)
			}
			byIno := map[uint64]*Entry{}
			tree.Walk(func(e *Entry) error {
				if o, ok := byIno[e.Ino]; ok && (o.Type != e.Type || o.Digest != e.Digest || o.Mode != e.Mode) {
					t.Errorf("inode %d: %q (%s %s) and %q (%s %s)", e.Ino, o.Path, o.Type, o.Digest, e.Path, e.Type, e.Digest)
				}
				byIno[e.Ino] = e
				return nil
			})
			b, _ := tree.Lookup("b")
			if b == nil || b.Digest != sha([]byte("old")) || b.Nlink != 1 {
				t.Errorf("b = %+v, want the old content with one link, as tar -x leaves it", b)
			}
		})
	}
}

// Random layers with whiteouts, opaques, replacements and hard links: the
// stored tree of every prefix chain equals BuildTree of the same layers, and
// building from a stored ancestor gives what building from scratch gives.
func TestTree_Incremental_EqualsScratch(t *testing.T) {
	seed := time.Now().UnixNano()
	if v := os.Getenv("STRATA_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	t.Logf("seed %d (STRATA_SEED replays)", seed)
	rnd := rand.New(rand.NewSource(seed))
	names := []string{"a", "b", "d", "d/x", "d/y", "d/e", "d/e/z", "f"}
	var layers [][]byte
	for i := 0; i < 6; i++ {
		var ents []tarEntry
		for _, n := range names {
			switch rnd.Intn(7) {
			case 0:
				ents = append(ents, tarEntry{name: n, body: fmt.Sprintf("%s@%d", n, i)})
			case 1:
				ents = append(ents, tarEntry{name: n + "/", typ: tar.TypeDir, mode: int64(0o700 + rnd.Intn(0o77))})
			case 2:
				ents = append(ents, tarEntry{name: parentOfName(n) + ".wh." + baseOfName(n)})
			case 3:
				ents = append(ents, tarEntry{name: n + "/" + OpaqueName})
			case 4:
				ents = append(ents, tarEntry{name: n, typ: tar.TypeSymlink, link: "somewhere"})
			}
		}
		ents = append(ents, tarEntry{name: fmt.Sprintf("h%d", i), body: "h"}, tarEntry{name: fmt.Sprintf("hl%d", i), typ: tar.TypeLink, link: fmt.Sprintf("h%d", i)})
		layers = append(layers, makeTar(t, ents...))
	}
	s := newTestStore(t)
	for n := 1; n <= len(layers); n++ {
		img, err := importLayers(t, s, fmt.Sprintf("p:%d", n), layers[:n]...)
		if err != nil {
			t.Fatalf("prefix %d: %v", n, err)
		}
		_, stored, err := s.ImageTree(string(img.ID))
		if err != nil {
			t.Fatal(err)
		}
		var ls [][]*Entry
		for _, d := range img.Layers {
			es, err := s.LayerEntries(d)
			if err != nil {
				t.Fatal(err)
			}
			ls = append(ls, es)
		}
		scratch, err := BuildTree(img.ChainID, ls...)
		if err != nil {
			t.Fatal(err)
		}
		if diff := treeDiff(stored, scratch); diff != "" {
			t.Fatalf("prefix %d: stored tree (built on the stored ancestor) differs from scratch: %s", n, diff)
		}
	}
}

func parentOfName(n string) string {
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		return n[:i+1]
	}
	return ""
}

func baseOfName(n string) string { return n[strings.LastIndexByte(n, '/')+1:] }

func treeDiff(a, b *Tree) string {
	var out []string
	a.Walk(func(ea *Entry) error {
		eb, ok := b.Lookup(ea.Path)
		if !ok {
			out = append(out, "only in stored: "+ea.Path)
			return nil
		}
		va, _ := ea.MarshalBinary()
		vb, _ := eb.MarshalBinary()
		if !bytes.Equal(va, vb) {
			out = append(out, fmt.Sprintf("%s: %+v != %+v", ea.Path, *ea, *eb))
		}
		return nil
	})
	b.Walk(func(eb *Entry) error {
		if _, ok := a.Lookup(eb.Path); !ok {
			out = append(out, "only in scratch: "+eb.Path)
		}
		return nil
	})
	if len(out) == 0 && !bytes.Equal(a.Bytes(), b.Bytes()) {
		out = append(out, "same entries, different tree files")
	}
	return strings.Join(out, "; ")
}
