package layerstore_test

// Review tests (external package): merged trees against a reference built by
// a real tool (umoci unpack of an OCI layout made from the same tars), two
// Store handles racing on one root, and lease semantics through the public
// API only.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/treecmp"
	"github.com/strata-dev/strata/layerstore"
)

// rent is one member of a synthetic layer tar.
type rent struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	mtime            int64
	xattrs           map[string]string
}

// rtar writes the members in the given order as a PAX tar.
func rtar(t testing.TB, ents ...rent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: time.Unix(1700000000+e.mtime, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func rdir(name string) rent          { return rent{name: name, typ: tar.TypeDir} }
func rfile(name, body string) rent   { return rent{name: name, body: body} }
func rlink(name, target string) rent { return rent{name: name, typ: tar.TypeLink, link: target} }
func rsym(name, target string) rent {
	return rent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func rwh(dir, name string) rent { return rent{name: rjoin(dir, ".wh."+name)} }
func ropq(dir string) rent      { return rent{name: rjoin(dir, ".wh..wh..opq")} }
func rjoin(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func readCloser(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// storeImage makes an image of raw (uncompressed) layer tars.
func storeImage(t testing.TB, s *layerstore.Store, name string, layers ...[]byte) (layerstore.Image, error) {
	t.Helper()
	var ls []layerstore.NewLayer
	for _, b := range layers {
		ls = append(ls, layerstore.NewLayer{Open: readCloser(b), History: ocispec.History{CreatedBy: "review"}})
	}
	var names []string
	if name != "" {
		names = []string{name}
	}
	return s.NewImage(context.Background(), layerstore.NewImageOptions{Layers: ls, Names: names})
}

func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
	if os.Geteuid() != 0 {
		t.Skip("the reference unpack needs root (owners, device nodes)")
	}
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

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

func TestReview_TreeVsUmoci(t *testing.T) {
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

// ---------------------------------------------------------------------------
// LayerTar fidelity and trees for archives GNU tar writes

// gnuSource fills dir with what odd tars are made of: long names and link
// targets, hard links, a sparse file, zero-size files, a fifo, non-ASCII
// names, sub-second mtimes and (where the file system has them) xattrs.
func gnuSource(t *testing.T, dir string, long bool) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "d"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	must(os.WriteFile(filepath.Join(dir, "d", "empty2"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("content\n"), 0o640))
	must(os.Link(filepath.Join(dir, "file"), filepath.Join(dir, "d", "hard1")))
	must(os.Link(filepath.Join(dir, "file"), filepath.Join(dir, "hard2")))
	must(os.WriteFile(filepath.Join(dir, "zlink-target"), []byte("z"), 0o644))
	must(os.Link(filepath.Join(dir, "zlink-target"), filepath.Join(dir, "a-link-first")))
	must(os.Symlink("file", filepath.Join(dir, "sym")))
	must(exec.Command("mkfifo", filepath.Join(dir, "fifo")).Run())
	must(os.WriteFile(filepath.Join(dir, "ünïcødé-名前"), []byte("utf8"), 0o644))
	// sparse: data at 0, 1 MiB and the last byte of 8 MiB
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	rnd := make([]byte, 70000)
	for i := range rnd {
		rnd[i] = byte(i*7 + i/251)
	}
	_, err = f.WriteAt(rnd, 0)
	must(err)
	_, err = f.WriteAt(rnd[:5000], 1<<20)
	must(err)
	_, err = f.WriteAt([]byte{1}, 8<<20-1)
	must(err)
	must(f.Close())
	if long {
		deep := filepath.Join(dir, strings.Repeat("long-directory-name-", 6), strings.Repeat("deeper-", 20))
		must(os.MkdirAll(deep, 0o755))
		must(os.WriteFile(filepath.Join(deep, strings.Repeat("file-with-a-long-name-", 8)), []byte("deep"), 0o644))
		must(os.Link(filepath.Join(deep, strings.Repeat("file-with-a-long-name-", 8)), filepath.Join(dir, strings.Repeat("L", 150))))
		must(os.Symlink(strings.Repeat("../", 40)+"target-of-a-long-symlink", filepath.Join(dir, "longsym")))
	}
	exec.Command("setfattr", "-n", "user.review", "-v", "yes", filepath.Join(dir, "file")).Run()
	ts := time.Unix(1700000000, 123456789)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 {
			os.Chtimes(p, ts, ts)
		}
		return nil
	})
}

func TestReview_LayerTar_GNUTarFormats(t *testing.T) {
	needTool(t, "tar")
	cases := []struct {
		name string
		args []string
		long bool
	}{
		{"gnu", []string{"--format=gnu"}, true},
		{"gnu-sparse", []string{"--format=gnu", "--sparse"}, true},
		{"oldgnu-sparse", []string{"--format=oldgnu", "--sparse"}, true},
		{"posix", []string{"--format=posix", "--xattrs"}, true},
		{"posix-sparse-0.0", []string{"--format=posix", "--sparse", "--sparse-version=0.0"}, true},
		{"posix-sparse-0.1", []string{"--format=posix", "--sparse", "--sparse-version=0.1"}, true},
		{"posix-sparse-1.0", []string{"--format=posix", "--sparse", "--sparse-version=1.0", "--xattrs"}, true},
		{"ustar", []string{"--format=ustar"}, false},
		{"v7", []string{"--format=v7"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			gnuSource(t, src, c.long)
			if c.name == "v7" { // v7 has no fifos
				os.Remove(filepath.Join(src, "fifo"))
			}
			args := append([]string{"-C", src, "--numeric-owner", "--sort=name", "-cf", "-"}, c.args...)
			args = append(args, ".")
			data, err := exec.Command("tar", args...).Output()
			if err != nil {
				t.Fatalf("tar %v: %v", args, err)
			}
			// data after the end-of-archive marker (beyond tar's own record padding)
			data = append(data, []byte("trailing garbage that is not a tar header at all")...)
			s := storetest.Open(t)
			img, err := storeImage(t, s, "", data)
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			if want := digest.FromBytes(data); img.Layers[0] != want {
				t.Fatalf("diffID %s, want %s", img.Layers[0], want)
			}
			rc, err := s.LayerTar(img.Layers[0])
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("LayerTar gave %d bytes, differing from the %d imported", len(got), len(data))
			}
			// The tree against GNU tar's own extraction.
			out := filepath.Join(t.TempDir(), "x")
			os.MkdirAll(out, 0o755)
			xargs := []string{"-C", out, "--numeric-owner", "--same-owner", "-p", "-xf", "-"}
			if strings.Contains(strings.Join(c.args, " "), "xattrs") {
				xargs = append(xargs, "--xattrs", "--xattrs-include=*")
			}
			x := exec.Command("tar", xargs...)
			x.Stdin = bytes.NewReader(data)
			if o, err := x.CombinedOutput(); err != nil {
				t.Fatalf("tar -x: %v\n%s", err, o)
			}
			want, err := treecmp.Snapshot(out, treecmp.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, tree, err := s.ImageTree(string(img.ID))
			if err != nil {
				t.Fatal(err)
			}
			opt := treecmp.Options{IgnoreRoot: true, IgnoreInodes: true, IgnoreXattrPrefix: []string{"security."}}
			for _, d := range treecmp.Compare(treecmp.FromLayerTree(tree), want, opt) {
				t.Errorf("store (A) vs tar -x (B): %s", d)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Leases

func liveLease(t *testing.T, id string, img layerstore.Image) layerstore.MountRecord {
	t.Helper()
	start, err := layerstore.ProcessStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return layerstore.MountRecord{ID: id, Image: img.ID, Ref: "r", Layers: img.Layers, ChainID: img.ChainID,
		Dir: "/mnt/" + id, PID: os.Getpid(), PIDStart: start, Created: time.Now()}
}

func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// objectsOf lists the objects a tree's regular files name.
func objectsOf(tr *layerstore.Tree) []digest.Digest {
	var out []digest.Digest
	tr.Walk(func(e *layerstore.Entry) error {
		if e.Type == layerstore.TypeReg {
			out = append(out, e.Digest)
		}
		return nil
	})
	return out
}

func objectsPresent(t *testing.T, s *layerstore.Store, ds []digest.Digest, want bool, when string) {
	t.Helper()
	for _, d := range ds {
		_, err := os.Stat(s.ObjectPath(d))
		if want && err != nil {
			t.Errorf("%s: object %s gone: %v", when, d, err)
		}
		if !want && err == nil {
			t.Errorf("%s: object %s still there", when, d)
		}
	}
}

func leaseImage(t *testing.T, s *layerstore.Store) (layerstore.Image, []digest.Digest) {
	t.Helper()
	img, err := storeImage(t, s, "leased:1",
		rtar(t, rdir("etc"), rfile("etc/os-release", "ID=review"), rfile("bin/sh", "shell")),
		rtar(t, rfile("app", "application"), rwh("bin", "sh")))
	if err != nil {
		t.Fatal(err)
	}
	_, tree, err := s.ImageTree("leased:1")
	if err != nil {
		t.Fatal(err)
	}
	return img, objectsOf(tree)
}

func TestReview_Lease_LiveMount(t *testing.T) {
	s := storetest.Open(t)
	img, objs := leaseImage(t, s)
	if err := s.AddMount(liveLease(t, "live", img)); err != nil {
		t.Fatal(err)
	}
	var ce *layerstore.ConflictError
	if _, err := s.RemoveImage("leased:1", false); !errors.As(err, &ce) || !errors.Is(err, layerstore.ErrInUse) {
		t.Fatalf("rm of a mounted image without force: %v, want a conflict", err)
	}
	if rep, err := s.Prune(true); err != nil || rep.DeletedImages != 0 {
		t.Fatalf("prune -a with a live mount: %+v %v", rep, err)
	}
	if rep, err := s.GC(); err != nil || len(rep.Mounts) != 0 || rep.Objects != 0 {
		t.Fatalf("gc with a live mount: %+v %v", rep, err)
	}
	if _, err := s.RemoveImage("leased:1", true); err != nil {
		t.Fatalf("rm -f: %v", err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, s, objs, true, "rm -f and gc with the mount alive")
	if tr, err := s.LayerTree(img.Layers); err != nil || tr.Len() == 0 {
		t.Errorf("tree of the leased chain after rm -f: %v", err)
	}
	// bin/sh is whited out but its layer is leased: its object must stay too
	objectsPresent(t, s, []digest.Digest{digest.FromString("shell")}, true, "rm -f with the mount alive")
	if err := s.RemoveMount("live"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, s, append(objs, digest.FromString("shell")), false, "umount and gc")
	du, _ := s.DiskUsage()
	if du.Layers != 0 || du.Objects != 0 {
		t.Errorf("after umount and gc: %d layers, %d objects", du.Layers, du.Objects)
	}
}

func TestReview_Lease_StaleMount(t *testing.T) {
	s := storetest.Open(t)
	img, objs := leaseImage(t, s)
	m := liveLease(t, "stale", img)
	m.PID, m.PIDStart = deadPID(t), 1
	if err := s.AddMount(m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveImage("leased:1", false); err != nil {
		t.Fatalf("rm of an image whose only mount is dead: %v", err)
	}
	// the stale lease still keeps layers and objects until GC drops it
	objectsPresent(t, s, objs, true, "rm with a stale lease")
	rep, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mounts) != 1 || rep.Mounts[0] != "stale" {
		t.Errorf("gc dropped leases %v, want [stale]", rep.Mounts)
	}
	objectsPresent(t, s, objs, false, "gc of the stale lease")
	if ms, _ := s.Mounts(); len(ms) != 0 {
		t.Errorf("leases after gc: %+v", ms)
	}
}

func TestReview_Lease_PruneAllLiveAndStale(t *testing.T) {
	s := storetest.Open(t)
	img, objs := leaseImage(t, s)
	other, err := storeImage(t, s, "other:1", rtar(t, rfile("o", "other")))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddMount(liveLease(t, "live", img)); err != nil {
		t.Fatal(err)
	}
	st := liveLease(t, "stale", other)
	st.PID, st.PIDStart = deadPID(t), 1
	if err := s.AddMount(st); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Prune(true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.DeletedImages != 1 || rep.Deleted[0] != other.ID {
		t.Errorf("prune -a deleted %v, want only %s", rep.Deleted, other.ID)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, s, objs, true, "prune -a and gc with a live mount")
	objectsPresent(t, s, []digest.Digest{digest.FromString("other")}, false, "prune -a and gc of a stale mount's image")
}

// A lease must protect the image's layers whatever the caller put in the
// record's Layers and ChainID: the store knows them from the image.
func TestReview_Lease_RecordWithoutLayers(t *testing.T) {
	s := storetest.Open(t)
	img, objs := leaseImage(t, s)
	m := liveLease(t, "live", img)
	m.Layers, m.ChainID = nil, ""
	if err := s.AddMount(m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveImage("leased:1", true); err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, s, objs, true, "rm -f of an image a live mount uses")
}

// UpdateMount exists because "the server's pid is known only once it runs":
// between AddMount and UpdateMount the lease has no pid. GC must not drop it
// (and delete the mount's upper directory) in that window.
func TestReview_Lease_PendingLeaseSurvivesGC(t *testing.T) {
	s := storetest.Open(t)
	img, _ := leaseImage(t, s)
	m := liveLease(t, "pending", img)
	m.PID, m.PIDStart = 0, 0
	if err := s.AddMount(m); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(s.MountDir("pending"), "upper")
	if err := os.MkdirAll(upper, 0o700); err != nil {
		t.Fatal(err)
	}
	rep, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mounts) != 0 {
		t.Errorf("gc dropped the pending lease: %v", rep.Mounts)
	}
	if _, err := os.Stat(upper); err != nil {
		t.Errorf("gc deleted the pending mount's upper dir: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Concurrency: two handles on one root, as two processes

// slowLayer is a layer blob whose reader stops half way until released.
type slowLayer struct {
	data    []byte
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (l *slowLayer) open() (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(bytes.NewReader(l.data[:len(l.data)/2]), readerFunc(func(p []byte) (int, error) {
		l.once.Do(func() { close(l.reached); <-l.release })
		return 0, io.EOF
	}), bytes.NewReader(l.data[len(l.data)/2:]))), nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// GC, rm and prune from another handle wait for an import that is staging
// objects, and never remove what it counts on.
func TestReview_Concurrency_GCDuringImport(t *testing.T) {
	root := t.TempDir()
	a := storetest.OpenAt(t, root, &layerstore.Options{LockTimeout: 10 * time.Second})
	b, err := layerstore.Open(root, &layerstore.Options{LockTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// an image holding content the import will find already stored
	if _, err := storeImage(t, a, "old:1", rtar(t, rfile("shared", "shared content"))); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 3<<20)
	l := &slowLayer{data: rtar(t, rfile("shared", "shared content"), rfile("big", big), rfile("small", "small")), reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := a.NewImage(context.Background(), layerstore.NewImageOptions{Names: []string{"new:1"}, Layers: []layerstore.NewLayer{{Open: l.open}}})
		done <- err
	}()
	<-l.reached
	if _, err := b.GC(); !errors.Is(err, layerstore.ErrLocked) {
		t.Errorf("gc during an import: %v, want ErrLocked", err)
	}
	if _, err := b.RemoveImage("old:1", false); !errors.Is(err, layerstore.ErrLocked) {
		t.Errorf("rm during an import: %v, want ErrLocked", err)
	}
	if _, err := b.Prune(true); !errors.Is(err, layerstore.ErrLocked) {
		t.Errorf("prune during an import: %v, want ErrLocked", err)
	}
	close(l.release)
	if err := <-done; err != nil {
		t.Fatalf("import: %v", err)
	}
	if _, err := b.RemoveImage("old:1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GC(); err != nil {
		t.Fatal(err)
	}
	_, tree, err := b.ImageTree("new:1")
	if err != nil {
		t.Fatal(err)
	}
	objectsPresent(t, b, objectsOf(tree), true, "after rm of the other image and gc")
}

// Two handles add, tag, resolve, build trees, remove, prune and collect in
// loops; errors other than "no such image" and "in use" fail, and the store
// checks clean after, with nothing left that GC should have taken.
func TestReview_Concurrency_TwoHandlesStress(t *testing.T) {
	root := t.TempDir()
	opts := &layerstore.Options{LockTimeout: 60 * time.Second}
	a := storetest.OpenAt(t, root, opts)
	b, err := layerstore.Open(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	pool := [][]byte{
		rtar(t, rdir("etc"), rfile("etc/common", "common"), rfile("bin/sh", "sh")),
		rtar(t, rfile("etc/common", "common"), rfile("a", "A")),
		rtar(t, rfile("b", "B"), rwh("bin", "sh"), rfile("big", strings.Repeat("b", 2<<20))),
		rtar(t, ropq("etc"), rfile("etc/new", "common"), rfile("c", "C")),
	}
	iters := 12
	if testing.Short() {
		iters = 4
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	tolerated := func(err error) bool {
		return err == nil || errors.Is(err, layerstore.ErrNotFound) || errors.Is(err, layerstore.ErrInUse)
	}
	worker := func(name string, fn func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < iters; i++ {
				if err := fn(i); !tolerated(err) {
					errs <- fmt.Errorf("%s %d: %w", name, i, err)
				}
			}
		}()
	}
	worker("import-a", func(i int) error {
		_, err := storeImage(t, a, fmt.Sprintf("x:%d", i%3), pool[0], pool[1+i%3])
		return err
	})
	worker("import-b", func(i int) error {
		_, err := storeImage(t, b, fmt.Sprintf("y:%d", i%2), pool[i%4:]...)
		return err
	})
	worker("rm-b", func(i int) error {
		_, err := b.RemoveImage(fmt.Sprintf("x:%d", i%3), i%2 == 0)
		return err
	})
	worker("tree-a", func(i int) error {
		_, tr, err := a.ImageTree(fmt.Sprintf("x:%d", (i+1)%3))
		if err == nil && tr.Len() < 2 {
			return fmt.Errorf("tree of %d entries", tr.Len())
		}
		if err := a.Tag(fmt.Sprintf("y:%d", i%2), fmt.Sprintf("z:%d", i%2)); !tolerated(err) {
			return err
		}
		return err
	})
	worker("prune-gc-a", func(i int) error {
		if i%3 == 0 {
			_, err := a.Prune(i%2 == 0)
			return err
		}
		_, err := a.GC()
		return err
	})
	worker("check-b", func(i int) error {
		// Check reads under the shared bbolt lock; what it reports mid-way
		// must already hold (garbage aside).
		r, err := b.Check(false)
		if err != nil {
			return err
		}
		for _, p := range r.Problems {
			return fmt.Errorf("check mid-way: %s", p)
		}
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := a.GC(); err != nil {
		t.Fatal(err)
	}
	r := storetest.Check(t, b)
	if r == nil {
		return
	}
	imgs, err := a.Images()
	if err != nil {
		t.Fatal(err)
	}
	chains := map[digest.Digest]bool{}
	for _, img := range imgs {
		chains[img.ChainID] = true
		_, tr, err := a.ImageTree(string(img.ID))
		if err != nil {
			t.Fatal(err)
		}
		objectsPresent(t, a, objectsOf(tr), true, "after the stress")
	}
	if r.Trees > len(chains) {
		t.Errorf("%d trees for %d chains after gc", r.Trees, len(chains))
	}
}

// ImageTree racing RemoveImage: it returns a tree or "not found", and a tree
// it builds for an image removed meanwhile is collected by the next GC.
func TestReview_Concurrency_ImageTreeVsRemove(t *testing.T) {
	root := t.TempDir()
	a := storetest.OpenAt(t, root, nil)
	b, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	l1 := rtar(t, rfile("base", "base"))
	// keep:1 holds l1 in a longer chain, so a tree for [l1] alone can be rebuilt
	if _, err := storeImage(t, a, "keep:1", l1, rtar(t, rfile("top", "top"))); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := storeImage(t, a, "victim:1", l1); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, tr, err := a.ImageTree("victim:1")
			if err != nil && !errors.Is(err, layerstore.ErrNotFound) {
				t.Errorf("ImageTree: %v", err)
			}
			if err == nil {
				if _, ok := tr.Lookup("base"); !ok {
					t.Errorf("tree without base")
				}
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := b.RemoveImage("victim:1", false); err != nil && !errors.Is(err, layerstore.ErrNotFound) {
				t.Errorf("rm: %v", err)
			}
		}()
		wg.Wait()
	}
	if _, err := a.GC(); err != nil {
		t.Fatal(err)
	}
	r := storetest.Check(t, a)
	if r != nil && r.Trees != 1 || r.Images != 1 {
		t.Errorf("%d images, %d trees after gc; want 1 and 1", r.Images, r.Trees)
	}
}

// isOpen reports whether this process has path open (Check hashing it).
func isOpen(path string) bool {
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}

// `strata check` in one process while `strata rmi` runs in another: the
// checker must not report the removal as corruption.
func TestReview_Concurrency_CheckDuringRemove(t *testing.T) {
	root := t.TempDir()
	a := storetest.OpenAt(t, root, nil)
	b, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A big object to keep Check busy hashing, and a small one of another
	// image whose digest sorts after it (Check hashes in digest order).
	big := bytes.Repeat([]byte("0123456789abcdef"), 24<<20/16)
	bigD := digest.FromBytes(big)
	var small string
	for i := 0; ; i++ {
		small = fmt.Sprintf("small %d", i)
		if digest.FromString(small) > bigD {
			break
		}
	}
	if _, err := storeImage(t, a, "big:1", rtar(t, rfile("big", string(big)))); err != nil {
		t.Fatal(err)
	}
	if _, err := storeImage(t, a, "small:1", rtar(t, rfile("small", small))); err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   *layerstore.CheckReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := a.Check(true)
		done <- result{r, err}
	}()
	bigPath := a.ObjectPath(bigD)
	deadline := time.Now().Add(20 * time.Second)
	for !isOpen(bigPath) {
		if time.Now().After(deadline) {
			t.Fatal("check never opened the big object")
		}
		time.Sleep(time.Millisecond)
	}
	// Check has read bbolt and listed objects/; it is hashing. Now rmi.
	if _, err := b.RemoveImage("small:1", false); err != nil && !errors.Is(err, layerstore.ErrLocked) {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	for _, p := range res.r.Problems {
		t.Errorf("check concurrent with rmi: %s", p)
	}
}
