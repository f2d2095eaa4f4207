package layerstore

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// newTestStore opens a store in a temp dir; its cleanup runs the checker
// with contents and fails the test on any problem or garbage. These are the
// in-package copies of internal/storetest's Open and Check, which this
// package's own tests cannot import (storetest imports layerstore).
func newTestStore(t testing.TB) *Store {
	t.Helper()
	return openChecked(t, t.TempDir(), &Options{LockTimeout: 5 * time.Second})
}

// openChecked opens the store at root; its cleanup runs mustCheck.
func openChecked(t testing.TB, root string, opts *Options) *Store {
	t.Helper()
	s, err := Open(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mustCheck(t, s) })
	return s
}

// mustCheck fails t on every problem and every piece of garbage.
func mustCheck(t testing.TB, s *Store) {
	t.Helper()
	for _, g := range checkOK(t, s, "check").Garbage {
		t.Errorf("check: garbage: %s", g)
	}
}

// checkOK runs the checker with contents and fails on any problem; the
// garbage is the caller's to judge.
func checkOK(t testing.TB, s *Store, when string) *CheckReport {
	t.Helper()
	r, err := s.Check(true)
	if err != nil {
		t.Fatalf("%s: check: %v", when, err)
	}
	for _, p := range r.Problems {
		t.Errorf("%s: check: %s", when, p)
	}
	return r
}

// tarEntry describes one member of a synthetic layer.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	size             int64 // overrides len(body) in the header when non-zero
	xattrs           map[string]string
	major, minor     int64
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: time.Unix(1700000000, 0), Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
			if e.size != 0 {
				h.Size = e.size
			}
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			// Go's writer refuses what bad archives hold; write the raw header.
			writeRawHeader(t, &buf, h)
			continue
		}
		if h.Typeflag == tar.TypeReg && e.size == 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tw.Flush() // Close would refuse a header whose body was not written
	buf.Write(make([]byte, 1024))
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func opener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// importLayers makes an image of raw layer blobs through NewImage.
func importLayers(t testing.TB, s *Store, name string, blobs ...[]byte) (Image, error) {
	t.Helper()
	var layers []NewLayer
	for _, b := range blobs {
		layers = append(layers, NewLayer{Open: opener(b), History: ocispec.History{CreatedBy: "test"}})
	}
	var names []string
	if name != "" {
		names = []string{name}
	}
	return s.NewImage(context.Background(), NewImageOptions{Layers: layers, Names: names})
}

func sha(b []byte) digest.Digest { return digest.FromBytes(b) }

// writeRawHeader writes a ustar header block by hand for names Go refuses.
func writeRawHeader(t testing.TB, buf *bytes.Buffer, h *tar.Header) {
	var blk [512]byte
	copy(blk[0:100], h.Name)
	copy(blk[100:108], fmt.Sprintf("%07o", h.Mode))
	copy(blk[108:116], fmt.Sprintf("%07o", h.Uid))
	copy(blk[116:124], fmt.Sprintf("%07o", h.Gid))
	copy(blk[124:136], fmt.Sprintf("%011o", h.Size))
	copy(blk[136:148], fmt.Sprintf("%011o", h.ModTime.Unix()))
	blk[156] = h.Typeflag
	copy(blk[157:257], h.Linkname)
	copy(blk[257:263], "ustar\x00")
	copy(blk[263:265], "00")
	copy(blk[148:156], "        ")
	sum := 0
	for _, c := range blk {
		sum += int(c)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
	buf.Write(blk[:])
	if h.Typeflag == tar.TypeReg {
		body := make([]byte, (h.Size+511)/512*512)
		buf.Write(body)
	}
}

// objectRefs reads the refcount of every object record.
func objectRefs(t *testing.T, s *Store) map[digest.Digest]uint64 {
	t.Helper()
	out := map[digest.Digest]uint64{}
	err := s.view(func(tx *bolt.Tx) error {
		return bucket(tx, bucketObjects).ForEach(func(k, v []byte) error {
			rec, err := unmarshalObject(v)
			if err != nil {
				return err
			}
			out[digest.Digest(k)] = rec.Refs
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// objectFiles lists the files under objects/.
func objectFiles(t *testing.T, s *Store) []string {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(s.Root(), "objects", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// mustEmpty asserts that GC left nothing: no records, no files, no garbage.
func mustEmpty(t *testing.T, s *Store, when string) {
	t.Helper()
	if refs := objectRefs(t, s); len(refs) != 0 {
		t.Errorf("%s: object records left: %v", when, refs)
	}
	if left := objectFiles(t, s); len(left) != 0 {
		t.Errorf("%s: object files left: %v", when, left)
	}
	r := checkOK(t, s, when)
	if len(r.Garbage) != 0 || r.Layers != 0 || r.Trees != 0 {
		t.Errorf("%s: %d layers, %d trees, garbage %v; want none", when, r.Layers, r.Trees, r.Garbage)
	}
}

// layerTar reads all of LayerTar(d), failing t on any error.
func layerTar(t testing.TB, s *Store, d digest.Digest) []byte {
	t.Helper()
	rc, err := s.LayerTar(d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("layer %s: %v", d, err)
	}
	return b
}
