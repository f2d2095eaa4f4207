package imagefmt

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestIndexTar_Links(t *testing.T) {
	p := filepath.Join(t.TempDir(), "links.tar")
	link := func(typ byte, name, target string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: typ, Linkname: target, Mode: 0o777}}
	}
	writeTar(t, p, []tarEntry{
		{hdr: tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}},
		reg("./a/data.tar", []byte("data")),
		link(tar.TypeSymlink, "b/layer.tar", "../a/data.tar"),
		link(tar.TypeSymlink, "c/layer.tar", "../b/layer.tar"), // a chain
		link(tar.TypeLink, "hard.tar", "a/data.tar"),
		link(tar.TypeSymlink, "abs.tar", "/a/data.tar"),
		link(tar.TypeSymlink, "out.tar", "../../etc/passwd"),
		link(tar.TypeSymlink, "loop1", "loop2"),
		link(tar.TypeSymlink, "loop2", "loop1"),
		reg("replaced", []byte("old")),
		link(tar.TypeSymlink, "replaced", "a/data.tar"), // a later member wins
		link(tar.TypeSymlink, "forward.tar", "later.tar"),
		reg("later.tar", []byte("later")),
	})
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	members, err := indexTar(f)
	if err != nil {
		t.Fatal(err)
	}
	src := &tarSource{f: f, members: members}
	defer src.close()
	want := map[string]string{
		"a/data.tar": "data", "b/layer.tar": "data", "c/layer.tar": "data", "hard.tar": "data",
		"replaced": "data", "forward.tar": "later", "later.tar": "later",
	}
	for name, content := range want {
		rc, size, err := src.open(name)
		if err != nil {
			t.Errorf("open %s: %v", name, err)
			continue
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != content || size != int64(len(content)) {
			t.Errorf("%s = %q (size %d), %v; want %q", name, b, size, err, content)
		}
	}
	for _, name := range []string{"abs.tar", "out.tar", "loop1", "loop2", "b", "."} {
		if _, _, err := src.open(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("open %s: %v, want not-exist", name, err)
		}
	}
}
