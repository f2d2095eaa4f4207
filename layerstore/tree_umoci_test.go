package layerstore_test

// Merged trees against the reference answer a real tool gives: umoci unpack
// of an OCI layout made from the same tars.

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/treecmp"
	"github.com/strata-dev/strata/layerstore"
)

// umociTree is the reference answer: the layers put into an OCI layout with
// `umoci raw add-layer` and unpacked with `umoci unpack`, read with treecmp.
func umociTree(t testing.TB, layers ...[]byte) *treecmp.Tree {
	t.Helper()
	needTool(t, "umoci")
	dir := t.TempDir()
	lay := filepath.Join(dir, "layout")
	run(t, "umoci", "init", "--layout", lay)
	run(t, "umoci", "new", "--image", lay+":t")
	for i, l := range layers {
		p := filepath.Join(dir, fmt.Sprintf("l%d.tar", i))
		if err := os.WriteFile(p, l, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "umoci", "raw", "add-layer", "--image", lay+":t", p)
	}
	bundle := filepath.Join(dir, "bundle")
	run(t, "umoci", "unpack", "--image", lay+":t", bundle)
	tr, err := treecmp.Snapshot(filepath.Join(bundle, "rootfs"), treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// compareWithUmoci stores the layers as one image and compares its merged
// tree with umoci's unpack of the same layers. Directory mtimes and the
// root's attributes are left out: umoci sets neither from the image for
// directories it creates implicitly.
func compareWithUmoci(t *testing.T, layers ...[]byte) *layerstore.Tree {
	t.Helper()
	want := umociTree(t, layers...)
	s := storetest.Open(t)
	img, err := storeImage(t, s, "ref:1", layers...)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	_, tree, err := s.ImageTree(string(img.ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range treecmp.Compare(treecmp.FromLayerTree(tree), want, treecmp.Options{IgnoreRoot: true, IgnoreInodes: true, IgnoreDirMtime: true}) {
		t.Errorf("store (A) vs umoci (B): %s", d)
	}
	return tree
}

func TestTree_MatchesUmoci(t *testing.T) {
	cases := []struct {
		name string
		tars func(t testing.TB) [][]byte
	}{
		{name: "WhiteoutDirThenReaddSameLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("d"), rfile("d/a", "a"), rfile("d/b", "b")),
				rtar(t, rwh("", "d"), rdir("d"), rfile("d/c", "c")),
			}
		}},
		{name: "WhiteoutDirAfterReaddSameLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("d"), rfile("d/a", "a")),
				rtar(t, rdir("d"), rfile("d/c", "c"), rwh("", "d")),
			}
		}},
		{name: "OpaqueWithNewChildren", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("d"), rfile("d/a", "a"), rdir("d/sub"), rfile("d/sub/x", "x")),
				rtar(t, rdir("d"), ropq("d"), rfile("d/b", "b")),
			}
		}},
		{name: "OpaqueAfterNewChildren", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("d"), rfile("d/a", "a")),
				rtar(t, rdir("d"), rfile("d/b", "b"), ropq("d")),
			}
		}},
		{name: "FileToDirToFile", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("x", "file"), rdir("y"), rfile("y/k", "k")),
				rtar(t, rdir("x"), rfile("x/in", "in"), rfile("y", "now a file")),
				rtar(t, rfile("x", "file again"), rdir("y"), rfile("y/n", "n")),
			}
		}},
		{name: "HardLinkTargetWhitedOutLater", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("a", "shared"), rlink("b", "a"), rlink("c", "a")),
				rtar(t, rwh("", "a")),
			}
		}},
		{name: "HardLinkBeforeTargetInKeyOrder", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("z"), rdir("z/deep"), rfile("z/deep/t", "target"), rlink("a", "z/deep/t"), rlink("z/b", "z/deep/t")),
			}
		}},
		{name: "DirMetadataOnly", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("d"), rfile("d/x", "x"), rdir("d/s"), rfile("d/s/y", "y")),
				rtar(t, rent{name: "d", typ: tar.TypeDir, mode: 0o700, uid: 5, gid: 6, xattrs: map[string]string{"user.k": "v"}}),
			}
		}},
		{name: "DuplicateEntries", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("f", "one"), rfile("f", "two"), rdir("d"), rent{name: "d", typ: tar.TypeDir, mode: 0o711}),
			}
		}},
		{name: "HardLinkTargetOverwritten", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("a", "old"), rlink("b", "a"), rfile("a", "new")),
			}
		}},
		{name: "HardLinkAcrossLayersBroken", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("a", "v1"), rlink("b", "a")),
				rtar(t, rfile("a", "v2")),
			}
		}},
		{name: "OddNames", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("./"), rdir("a//b/"), rfile("a//b//c", "c"), rfile("./a/x/../y", "y"), rfile("/abs", "abs")),
			}
		}},
		{name: "SymlinkParentReplacedByDir", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("real"), rfile("real/f", "f"), rsym("d", "real")),
				rtar(t, rdir("d"), rfile("d/x", "x")),
			}
		}},
		{name: "WhiteoutWithoutParentEntry", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("p"), rdir("p/q"), rfile("p/q/r", "r"), rfile("p/q/s", "s")),
				rtar(t, rwh("p/q", "r")),
			}
		}},
		{name: "OpaqueWithoutParentEntry", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("p"), rfile("p/old", "o")),
				rtar(t, ropq("p"), rfile("p/new", "n")),
			}
		}},
		{name: "HardLinkTargetBecomesDir", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("a", "old"), rlink("b", "a"), rdir("a"), rfile("a/in", "in")),
			}
		}},
		{name: "HardLinkChainRetargeted", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("a", "x"), rlink("b", "a"), rlink("a", "b")),
			}
		}},
		{name: "SameLayerFileThenWhiteout", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("f", "lower"), rfile("g", "lower g")),
				rtar(t, rfile("f", "upper"), rwh("", "f"), rwh("", "g"), rfile("g", "upper g")),
			}
		}},
		{name: "WhiteoutPrefixedParent", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("a"), rfile("a/b", "b")),
				rtar(t, rfile("a/.wh.b/c", "c")),
			}
		}},
		{name: "OpaqueRoot", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("x", "x"), rdir("d"), rfile("d/y", "y")),
				rtar(t, ropq(""), rfile("z", "z")),
			}
		}},
		{name: "SpecialFilesAndXattrs", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("dev"), rent{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
					rent{name: "fifo", typ: tar.TypeFifo, mode: 0o600},
					rent{name: "x", body: "x", mode: 0o4755, uid: 1000, gid: 1000, xattrs: map[string]string{"user.a": "1", "trusted.b": "2"}},
					rent{name: "s", typ: tar.TypeSymlink, link: "/nowhere", mode: 0o777}),
				rtar(t, rent{name: "x", typ: tar.TypeSymlink, link: "s", mode: 0o777}, rdir("s"), rent{name: "fifo", body: "now a file", mode: 0o2711}),
			}
		}},
		{name: "SymlinkParentSameLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("etc"), rfile("etc/passwd", "p")),
				rtar(t, rent{name: "d", typ: tar.TypeSymlink, link: "etc", mode: 0o777}, rfile("d/x", "x")),
			}
		}},
		{name: "SymlinkParentLowerLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("etc"), rfile("etc/passwd", "p"), rent{name: "d", typ: tar.TypeSymlink, link: "/etc", mode: 0o777}),
				rtar(t, rfile("d/x", "x")),
			}
		}},
		{name: "WhiteoutThroughSymlinkParent", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("etc"), rfile("etc/passwd", "p"), rfile("etc/group", "g"), rent{name: "d", typ: tar.TypeSymlink, link: "etc", mode: 0o777}),
				rtar(t, rwh("d", "passwd")),
			}
		}},
		{name: "FileReplacesDirWithChildrenSameLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("d"), rfile("d/x", "x"), rdir("d/sub"), rfile("d/sub/y", "y"), rfile("d", "now a file")),
			}
		}},
		{name: "FileReplacesImplicitDirSameLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("a/b/c", "c"), rfile("a", "now a file"), rfile("z", "z")),
			}
		}},
		{name: "SymlinkReplacesDirWithChildrenSameLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("etc"), rdir("d"), rfile("d/x", "x"), rsym("d", "etc")),
			}
		}},
		{name: "FileReplacesDirOfLowerLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("d"), rfile("d/low", "low")),
				rtar(t, rdir("d"), rfile("d/x", "x"), rfile("d", "now a file")),
			}
		}},
		{name: "HardLinkIntoReplacedDir", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("d"), rfile("d/f", "kept by its links"), rlink("g", "d/f"), rlink("h", "d/f"), rfile("d", "now a file")),
			}
		}},
		{name: "DirMetadataTwiceKeepsChildren", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("d"), rfile("d/x", "x"), rent{name: "d", typ: tar.TypeDir, mode: 0o700}),
			}
		}},
		{name: "SymlinkParentDeepSameLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("usr"), rdir("usr/lib"), rsym("lib", "usr/lib"), rdir("lib/x"), rfile("lib/x/so", "so"), rsym("lib64", "/lib/../usr/lib/x")),
				rtar(t, rfile("lib64/more", "m"), rwh("lib64", "so")),
			}
		}},
		{name: "SymlinkParentEscapeStaysInRoot", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rsym("up", "../../../.."), rsym("abs", "/"), rfile("up/etc/f", "f"), rfile("abs/g", "g")),
			}
		}},
		{name: "WhiteoutThroughSymlinkSameLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("etc"), rfile("etc/passwd", "p"), rfile("etc/group", "g")),
				rtar(t, rsym("d", "etc"), rwh("d", "passwd")),
			}
		}},
		{name: "OpaqueThroughSymlinkSameLayer", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("etc"), rfile("etc/passwd", "p"), rfile("etc/group", "g")),
				rtar(t, rsym("d", "etc"), ropq("d"), rfile("etc/new", "n")),
			}
		}},
		{name: "WhiteoutUnderSymlinkReplacedByDir", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rdir("etc"), rfile("etc/passwd", "p"), rsym("d", "etc")),
				rtar(t, rdir("d"), rwh("d", "passwd"), rfile("d/x", "x")),
			}
		}},
		{name: "SymlinkModeFromHeader", tars: func(t testing.TB) [][]byte {
			return [][]byte{
				rtar(t, rfile("t", "t"), rent{name: "s", typ: tar.TypeSymlink, link: "t", mode: 0o644}),
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			compareWithUmoci(t, c.tars(t)...)
		})
	}
}
