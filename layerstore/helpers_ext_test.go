package layerstore_test

// Helpers of the external tests: synthetic layer tars and images stored
// through the public API.

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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

func rdir(name string) rent { return rent{name: name, typ: tar.TypeDir} }

func rfile(name, body string) rent { return rent{name: name, body: body} }

func rlink(name, target string) rent { return rent{name: name, typ: tar.TypeLink, link: target} }

func rsym(name, target string) rent {
	return rent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}

func rwh(dir, name string) rent { return rent{name: rjoin(dir, ".wh."+name)} }

func ropq(dir string) rent { return rent{name: rjoin(dir, ".wh..wh..opq")} }

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
