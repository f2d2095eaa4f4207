package layerstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// A layer's tar split is its uncompressed tar stream with the contents of
// regular files cut out and replaced by references to their objects. It is
// what lets LayerTar give back the very bytes that were imported, so an
// exported or pushed layer keeps its diffID. It is stored zstd-compressed
// under layers/<diffID>/tarsplit; headers compress well, so it costs a few
// hundred bytes per thousand entries.
//
// Encoding: a sequence of segments, each a kind byte and a uvarint length:
//
//	'L' len, then len literal bytes (headers, padding)
//	'C' len, then a length-prefixed digest: len bytes of that object from its start
//	'R' len, offset, object size, then a length-prefixed digest: len bytes of
//	    that object from offset (a data fragment of a sparse file, see sparse.go)
const (
	segLiteral = 'L'
	segContent = 'C'
	segRange   = 'R'
)

// splitter sits between the decompressed stream and the tar reader and
// records what passes, except file contents read between begin and end. It
// compresses as it goes, so what it holds is the compressed split: a
// megabyte-sized run of zeros costs a few bytes.
type splitter struct {
	r       io.Reader
	out     bytes.Buffer
	enc     *zstd.Encoder
	lit     []byte
	off     bool // over budget: the layer gets no tar split
	err     error
	content bool
	n       int64                   // content bytes read since begin
	objects map[digest.Digest]int64 // objects the split refers to
	total   int64                   // bytes read so far

	// The raw bytes read since mark, kept for the entry the tar reader is
	// reading the headers of (the sparse map is among them).
	capture  []byte
	capStart int64 // stream offset of capture[0]
	capOver  bool  // more than maxCapture: not kept

	chash hash.Hash // sparse content: hash of the packed data read
}

// maxCapture bounds the header bytes kept for one entry. archive/tar reads
// at most 1 MiB of each kind of special header, so real archives stay far
// below it; past it a sparse file's data stays literal in the split.
const maxCapture = 8 << 20

// maxSplit bounds a tar split (compressed). A layer past it (one with much
// data outside file contents: whiteout bodies, bytes after the end of the
// archive, a sparse file whose map could not be read) is imported without
// one: it mounts, but cannot be given back byte for byte.
const maxSplit = 64 << 20

// litChunk is how much literal data is buffered before it is compressed.
const litChunk = 256 << 10

func newSplitter(r io.Reader) *splitter {
	sp := &splitter{r: r}
	enc, err := zstd.NewWriter(&sp.out, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
	if err != nil {
		sp.off, sp.err = true, err
	}
	sp.enc = enc
	return sp
}

func (sp *splitter) Read(p []byte) (int, error) {
	n, err := sp.r.Read(p)
	sp.total += int64(n)
	if !sp.content && !sp.capOver {
		if len(sp.capture)+n > maxCapture {
			sp.capOver, sp.capture = true, nil
		} else {
			sp.capture = append(sp.capture, p[:n]...)
		}
	}
	switch {
	case sp.content:
		sp.n += int64(n)
		if sp.chash != nil {
			sp.chash.Write(p[:n])
		}
	case sp.off:
	default:
		sp.lit = append(sp.lit, p[:n]...)
		if len(sp.lit) >= litChunk {
			sp.flushLiteral()
		}
	}
	return n, err
}

// write appends to the compressed split, turning it off past the budget.
func (sp *splitter) write(b []byte) {
	if sp.off {
		return
	}
	if _, err := sp.enc.Write(b); err != nil {
		sp.off, sp.err = true, err
	}
	if sp.out.Len() > maxSplit {
		sp.disable()
	}
}

func (sp *splitter) flushLiteral() {
	if len(sp.lit) == 0 || sp.off {
		sp.lit = sp.lit[:0]
		return
	}
	sp.write([]byte{segLiteral})
	sp.write(binary.AppendUvarint(nil, uint64(len(sp.lit))))
	sp.write(sp.lit)
	sp.lit = sp.lit[:0]
}

// mark starts keeping the raw bytes read, for the next entry's headers.
func (sp *splitter) mark() {
	sp.capture, sp.capStart, sp.capOver = sp.capture[:0], sp.total, false
}

// captured is what was read since mark, and the stream offset it starts at;
// nil when it was too much to keep.
func (sp *splitter) captured() ([]byte, int64) {
	if sp.capOver {
		return nil, 0
	}
	return sp.capture, sp.capStart
}

// disable drops the tar split: the layer is stored without one.
func (sp *splitter) disable() {
	sp.off = true
	sp.out = bytes.Buffer{}
}

// beginSparse marks that what follows is the packed data of a sparse file;
// it is hashed so that endSparse can tell whether the map is right.
func (sp *splitter) beginSparse() {
	sp.begin()
	sp.chash = sha256.New()
}

// endSparse records the packed data read since beginSparse as the fragments
// frags of object d (size bytes), provided they hold what was read: the
// packed data must hash to sum, the hash of those fragments of the content.
// Otherwise the layer gets no tar split.
func (sp *splitter) endSparse(d digest.Digest, size int64, frags []sparseFrag, sum []byte) {
	sp.content = false
	got := sp.chash.Sum(nil)
	sp.chash = nil
	total, ok := validFrags(frags, size)
	if !ok || total != sp.n || !bytes.Equal(got, sum) {
		sp.disable()
		return
	}
	if sp.off {
		return
	}
	for _, f := range frags {
		if f.length == 0 {
			continue
		}
		seg := []byte{segRange}
		seg = binary.AppendUvarint(seg, uint64(f.length))
		seg = binary.AppendUvarint(seg, uint64(f.offset))
		seg = binary.AppendUvarint(seg, uint64(size))
		sp.write(appendString(seg, string(d)))
	}
	if sp.objects == nil {
		sp.objects = map[digest.Digest]int64{}
	}
	sp.objects[d] = size
}

// begin marks that what follows is the content of a regular file.
func (sp *splitter) begin() {
	sp.flushLiteral()
	sp.content = true
	sp.n = 0
}

// end records the content read since begin as the object d.
func (sp *splitter) end(d digest.Digest) {
	sp.content = false
	if sp.n == 0 || sp.off {
		return
	}
	seg := []byte{segContent}
	seg = binary.AppendUvarint(seg, uint64(sp.n))
	sp.write(appendString(seg, string(d)))
	if sp.objects == nil {
		sp.objects = map[digest.Digest]int64{}
	}
	sp.objects[d] = sp.n
}

// finish returns the compressed tar split, nil when over budget.
func (sp *splitter) finish() ([]byte, error) {
	sp.flushLiteral()
	if sp.enc != nil {
		if err := sp.enc.Close(); err != nil && !sp.off {
			return nil, err
		}
	}
	if sp.off {
		return nil, nil
	}
	return sp.out.Bytes(), nil
}

type segment struct {
	kind   byte
	n      int64
	lit    []byte
	object digest.Digest
	off    int64 // segRange: where in the object
	size   int64 // segRange: the object's size
}

// decodeTarSplit decodes a stored tar split; a layer without one has no segments.
func decodeTarSplit(blob []byte) ([]segment, error) {
	if blob == nil {
		return nil, nil
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	raw, err := dec.DecodeAll(blob, nil)
	if err != nil {
		return nil, fmt.Errorf("tar split: %w: %w", err, ErrCorrupt)
	}
	var out []segment
	d := decoder{b: raw}
	for len(d.b) > 0 && d.err == nil {
		kind := d.byte()
		n := d.uvarint()
		switch kind {
		case segLiteral:
			if n > uint64(len(d.b)) {
				return nil, fmt.Errorf("tar split: literal overruns: %w", ErrCorrupt)
			}
			out = append(out, segment{kind: kind, n: int64(n), lit: d.b[:n]})
			d.b = d.b[n:]
		case segContent:
			out = append(out, segment{kind: kind, n: int64(n), object: digest.Digest(d.string())})
		case segRange:
			off, size := d.uvarint(), d.uvarint()
			if off > size || n > size-off {
				return nil, fmt.Errorf("tar split: range past the end of its object: %w", ErrCorrupt)
			}
			out = append(out, segment{kind: kind, n: int64(n), off: int64(off), size: int64(size), object: digest.Digest(d.string())})
		default:
			return nil, fmt.Errorf("tar split: segment kind %q: %w", kind, ErrCorrupt)
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("tar split: %w", d.err)
	}
	return out, nil
}

var keyTarSplit = []byte("tarsplit")

// LayerTar gives back the uncompressed tar stream of a stored layer, byte for
// byte as it was imported: its sha256 is the layer's diffID.
func (s *Store) LayerTar(diffID digest.Digest) (io.ReadCloser, error) {
	var blob []byte
	err := s.view(func(tx *bolt.Tx) error {
		lb := bucket(tx, bucketLayers).Bucket([]byte(diffID))
		if lb == nil {
			return fmt.Errorf("layer %s: %w", diffID, ErrNotFound)
		}
		v := lb.Get(keyTarSplit)
		if v == nil {
			return fmt.Errorf("layer %s: imported without a tar split (its tar held more than %d MiB outside file contents), so it cannot be given back byte for byte: %w", diffID, maxSplit>>20, ErrNotFound)
		}
		blob = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	segs, err := decodeTarSplit(blob)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", diffID, err)
	}
	return &tarJoiner{s: s, segs: segs}, nil
}

// tarJoiner streams segments, opening objects as it reaches them.
type tarJoiner struct {
	s    *Store
	segs []segment
	cur  io.Reader
	f    *os.File // the object being read
	fd   digest.Digest
}

func (j *tarJoiner) Read(p []byte) (int, error) {
	for {
		if j.cur != nil {
			n, err := j.cur.Read(p)
			if err == io.EOF {
				err = nil
				j.cur = nil
				if n == 0 {
					continue
				}
			}
			return n, err
		}
		if len(j.segs) == 0 {
			return 0, io.EOF
		}
		seg := j.segs[0]
		j.segs = j.segs[1:]
		if seg.kind == segLiteral {
			j.cur = bytes.NewReader(seg.lit)
			continue
		}
		// The fragments of a sparse file come one after the other: keep
		// its object open across them.
		if j.f == nil || j.fd != seg.object {
			j.closeObject()
			f, err := os.Open(j.s.ObjectPath(seg.object))
			if err != nil {
				return 0, fmt.Errorf("object %s: %w", seg.object, err)
			}
			j.f, j.fd = f, seg.object
		}
		j.cur = &exactReader{r: io.NewSectionReader(j.f, seg.off, seg.n), want: seg.n, d: seg.object}
	}
}

func (j *tarJoiner) closeObject() {
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}

func (j *tarJoiner) Close() error {
	j.closeObject()
	j.segs = nil
	return nil
}

// exactReader fails when an object is shorter than the tar split says.
type exactReader struct {
	r    io.Reader
	want int64
	got  int64
	d    digest.Digest
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.got += int64(n)
	if errors.Is(err, io.EOF) && e.got != e.want {
		return n, fmt.Errorf("object %s: %d bytes, want %d: %w", e.d, e.got, e.want, ErrCorrupt)
	}
	return n, err
}
