package layerstore

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"path"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ingested is a layer parsed and staged, not yet committed.
type ingested struct {
	rec      layerRecord
	tarSplit []byte   // see tarsplit.go
	entries  []*Entry // sorted by Key
	objects  map[digest.Digest]int64
}

// hashReader hashes and counts what passes through it.
type hashReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *hashReader) digest() digest.Digest {
	return digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", h.h.Sum(nil)))
}

// Decompress returns a reader of r's uncompressed bytes, the format chosen by
// magic bytes: gzip, zstd or none. The name is "gzip", "zstd" or "none".
func Decompress(r io.Reader) (io.ReadCloser, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", err
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "gzip", fmt.Errorf("gzip: %w: %w", err, ErrCorrupt)
		}
		return zr, "gzip", nil
	case len(magic) >= 4 && bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, "zstd", fmt.Errorf("zstd: %w: %w", err, ErrCorrupt)
		}
		return zr.IOReadCloser(), "zstd", nil
	}
	return io.NopCloser(br), "none", nil
}

// cleanPath turns a tar name into a store path. Absolute names are taken
// relative to the root; a name that climbs out of the root is an error.
func cleanPath(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("tar entry %q: NUL in name: %w", name, ErrInvalid)
	}
	p := path.Clean("/" + name)
	// path.Clean("/" + x) cannot climb above "/", so check the raw elements.
	depth := 0
	for _, el := range strings.Split(name, "/") {
		switch el {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return "", fmt.Errorf("tar entry %q: path leaves the layer: %w", name, ErrInvalid)
			}
		default:
			depth++
		}
	}
	return strings.TrimPrefix(p, "/"), nil
}

// parseLayer reads one (possibly compressed) layer blob, stages its file
// contents and returns its entries. It verifies the blob digest and size and
// the diffID when they are given.
//
// progress, if not nil, is told of the blob bytes as they are read, and
// extracted of how far into the blob the bytes the tar reader has taken
// came from (the two are a few chunks apart). trailer bounds the bytes
// past the tar's end-of-archive marker (maxTrailer for a new layer; -1
// for none, for the replay of a stored one).
func (s *Store) parseLayer(ctx context.Context, blob LayerBlob, st *staging, progress, extracted func(int64), trailer int64) (*ingested, error) {
	rc, err := blob.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var br io.Reader = rc
	if blob.Size >= 0 && blob.Digest != "" {
		// One byte past the declared size tells a wrong blob; reading on
		// would let a registry that sends without end fill a pull's
		// download (and keep the pull going) for nothing.
		br = io.LimitReader(rc, blob.Size+1)
	}
	comp := &hashReader{r: sourceReader{br}, h: sha256.New()}
	var src io.Reader = comp
	if progress != nil {
		src = &progressReader{r: comp, fn: progress}
	}
	dr, compression, err := Decompress(src)
	if err != nil {
		if blob.Size >= 0 && blob.Digest != "" && comp.n > blob.Size {
			return nil, fmt.Errorf("blob %s: more than %d bytes, manifest says %d: %w", blob.Digest, blob.Size, blob.Size, ErrSizeMismatch)
		}
		return nil, err
	}
	in := startInflater(dr, func() int64 { return comp.n }, extracted)
	defer in.stop() // before rc.Close: the goroutine reads rc
	raw := &hashReader{r: in, h: sha256.New()}
	sp := newSplitter(raw)
	ing := &ingested{objects: map[digest.Digest]int64{}}
	ing.rec.Compression = compression
	// pastSize names the error of a blob longer than declared as that: the
	// decompressor reading on past its end may fail first.
	pastSize := func(err error) error {
		in.stop()
		if blob.Size >= 0 && blob.Digest != "" && comp.n > blob.Size {
			return fmt.Errorf("blob %s: more than %d bytes, manifest says %d: %w", blob.Digest, blob.Size, blob.Size, ErrSizeMismatch)
		}
		return err
	}
	if err := s.readTar(ctx, sp, st, ing); err != nil {
		return nil, pastSize(fmt.Errorf("layer %s (%s): %w", blobName(blob), compression, err))
	}
	// The rest of the stream (tar padding past the end marker) counts toward
	// the diffID and belongs to the tar split. Docker and containerd read
	// it all, however long: a few kilobytes of gzip or zstd can inflate to
	// terabytes of zeros there, which no file's declared size bounds. Real
	// tars end a record past the marker (GNU tar's 10 KiB by default), so
	// a layer that goes on past maxTrailer is refused, the rest unread
	// (nothing of it is stored, so its digest need not be checked).
	var rest io.Reader = sp
	if trailer >= 0 {
		rest = io.LimitReader(sp, trailer+1)
	}
	if n, err := io.Copy(io.Discard, rest); err != nil {
		return nil, pastSize(fmt.Errorf("layer %s (%s): %w", blobName(blob), compression, corrupt(err)))
	} else if trailer >= 0 && n > trailer {
		return nil, pastSize(fmt.Errorf("layer %s (%s): the tar goes on for more than %d bytes past its end-of-archive marker (at byte %d): %w",
			blobName(blob), compression, trailer, sp.total-n, ErrInvalid))
	}
	// The decompressor has met its end: the goroutine is done with comp.
	in.stop()
	if _, err := io.Copy(io.Discard, comp); err != nil {
		return nil, fmt.Errorf("layer %s: %w", blobName(blob), err)
	}
	if blob.Size >= 0 && blob.Digest != "" && comp.n != blob.Size {
		return nil, fmt.Errorf("blob %s: %d bytes, manifest says %d: %w", blob.Digest, comp.n, blob.Size, ErrSizeMismatch)
	}
	if blob.Digest != "" && comp.digest() != blob.Digest {
		return nil, fmt.Errorf("blob %s: content hashes to %s: %w", blob.Digest, comp.digest(), ErrDigestMismatch)
	}
	diffID := raw.digest()
	if blob.DiffID != "" && diffID != blob.DiffID {
		return nil, fmt.Errorf("layer %s: uncompressed content hashes to %s, config's diff_id is %s: %w", blobName(blob), diffID, blob.DiffID, ErrDigestMismatch)
	}
	ing.rec.DiffID = diffID
	if ing.tarSplit, err = sp.finish(); err != nil {
		return nil, err
	}
	ing.rec.TarSize = raw.n
	if blob.Digest != "" {
		ing.rec.BlobDigests = []digest.Digest{blob.Digest}
	}
	ing.rec.Entries = len(ing.entries)
	ing.rec.Created = time.Now().UTC()
	return ing, nil
}

// maxTrailer is the most a new layer's tar may hold past its end-of-archive
// marker: a hundred times GNU tar's default record (10 KiB), or the whole
// record of tar -b 2048, and milliseconds to inflate.
const maxTrailer = 1 << 20

func blobName(b LayerBlob) string {
	if b.Digest != "" {
		return string(b.Digest)
	}
	return "tarball"
}

// corrupt marks a decompression or tar error as ErrCorrupt. An error of the
// system (no space left, an I/O error, reading or writing) or of reading
// the blob (a registry that went away) says nothing about the input and
// keeps its own class.
func corrupt(err error) error {
	var (
		errno syscall.Errno
		se    *sourceError
	)
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrInvalid) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &errno) || errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("%w: %w", err, ErrCorrupt)
}

// sourceReader marks the errors of reading a blob (all but io.EOF), which
// pass through the decompressor and the tar reader as they are.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// maxNameLen is the longest name (one path component) Linux file systems
// take; a layer that holds a longer one could not be unpacked by tar -x.
const maxNameLen = 255

// checkNameLengths refuses a path with a component longer than maxNameLen.
// For a whiteout it is the name it deletes that counts, as docker writes the
// whiteout as a device node of that name.
func checkNameLengths(name, p string, t Type) error {
	for rest := p; rest != ""; {
		el := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			el, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
			if t == TypeWhiteout {
				el = strings.TrimPrefix(el, WhiteoutPrefix)
			}
		}
		if len(el) > maxNameLen {
			return fmt.Errorf("tar entry %q: a name of %d bytes, more than the %d Linux allows: %w: %w", name, len(el), maxNameLen, unix.ENAMETOOLONG, ErrInvalid)
		}
	}
	return nil
}

type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(int64(n))
	}
	return n, err
}

// readTar turns a tar stream into entries, staging regular-file contents.
func (s *Store) readTar(ctx context.Context, sp *splitter, st *staging, ing *ingested) error {
	tr := tar.NewReader(sp)
	byPath := map[string]*Entry{}
	linksTo := map[string][]string{}      // hard-link target -> its links, in tar order
	below := map[string]map[string]bool{} // directory path -> paths of this layer directly below it
	// A stored layer read again (check) is not taken in: the limits of an
	// import do not apply, what it holds was taken in already.
	free := int64(-1)
	if !st.replay {
		free = freeBytes(st.dir)
	}
	limit, over := free, func(name string, size int64) error {
		return fmt.Errorf("tar entry %q: declared size %d bytes exceeds the %d bytes the store can take: %w", name, size, free, unix.ENOSPC)
	}
	if m := s.opts.MaxFileSize; m > 0 && !st.replay && (free < 0 || m < free) {
		limit, over = m, func(name string, size int64) error {
			return fmt.Errorf("tar entry %q: declared size %d bytes, more than the store's MaxFileSize of %d: %w: %w", name, size, m, ErrOverLimit, ErrInvalid)
		}
	}
	// forget drops the entry at q, as tar -x unlinks a name it replaces. A
	// file other entries hard-link to lives on in the first of those links,
	// which takes over its content; the others now link to that one.
	forget := func(q string) {
		old, ok := byPath[q]
		if !ok {
			return
		}
		if old.HardLink != "" {
			linksTo[old.HardLink] = slices.DeleteFunc(linksTo[old.HardLink], func(l string) bool { return l == q })
		}
		if links := linksTo[q]; len(links) > 0 {
			first := byPath[links[0]]
			first.HardLink = ""
			for _, l := range links[1:] {
				byPath[l].HardLink = first.Path
			}
			linksTo[first.Path] = links[1:]
		}
		delete(linksTo, q)
		delete(byPath, q)
	}
	// forgetBelow drops everything under directory dir: an entry that is not
	// a directory replaces the directory there with all it holds, as docker
	// (RemoveAll) does.
	forgetBelow := func(dir string) {
		stack := []string{dir}
		for len(stack) > 0 {
			d := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for q := range below[d] {
				forget(q)
				stack = append(stack, q)
			}
			delete(below, d)
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// What is left of the previous entry (a body no one reads) passes
		// now, so that the splitter keeps only this entry's headers.
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return fmt.Errorf("read tar: %w", corrupt(err))
		}
		sp.mark()
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", corrupt(err))
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		p, err := cleanPath(hdr.Name)
		if err != nil {
			return err
		}
		if hdr.Uid < 0 || hdr.Uid > math.MaxUint32 || hdr.Gid < 0 || hdr.Gid > math.MaxUint32 {
			return fmt.Errorf("tar entry %q: uid %d, gid %d out of range: %w", hdr.Name, hdr.Uid, hdr.Gid, ErrInvalid)
		}
		e := &Entry{
			Path:  p,
			Mode:  uint32(hdr.Mode) & 0o7777,
			UID:   uint32(hdr.Uid),
			GID:   uint32(hdr.Gid),
			Mtime: clampTime(hdr.ModTime),
		}
		base := e.Name()
		switch {
		case base == OpaqueName:
			e.Type = TypeOpaque
		case strings.HasPrefix(base, WhiteoutPrefix):
			target := strings.TrimPrefix(base, WhiteoutPrefix)
			if target == "" || target == "." || target == ".." {
				return fmt.Errorf("tar entry %q: whiteout of no name: %w", hdr.Name, ErrInvalid)
			}
			e.Type = TypeWhiteout
		}
		if err := checkNameLengths(hdr.Name, p, e.Type); err != nil {
			return err
		}
		forget(p)
		if e.Type != 0 || hdr.Typeflag != tar.TypeDir {
			forgetBelow(p)
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
			}
		}
		if e.Type == 0 {
			switch hdr.Typeflag {
			case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
				e.Type = TypeReg
				if hdr.Size < 0 {
					return fmt.Errorf("tar entry %q: negative size: %w", hdr.Name, ErrInvalid)
				}
				// Sparse files count too: the tar reader fills their holes with
				// zeros that we must hash, so a huge declared size is a denial
				// of service even when the archive is small.
				if limit >= 0 && hdr.Size > limit {
					return over(hdr.Name, hdr.Size)
				}
				e.Size = hdr.Size
				var d digest.Digest
				// A sparse file's packed data is recorded as ranges of its
				// object when its map can be read (sparse.go); otherwise
				// it stays literal in the tar split.
				var (
					r      io.Reader = tr
					frags  []sparseFrag
					fh     *fragHasher
					sparse = isSparse(hdr)
					mapped bool
				)
				if sparse {
					raw, start := sp.captured()
					if frags, mapped = sparseMap(hdr, raw, start); mapped {
						fh = &fragHasher{h: sha256.New(), frags: frags}
						r = io.TeeReader(tr, fh)
						sp.beginSparse()
					}
				} else {
					sp.begin()
				}
				if hdr.Size <= smallFile {
					data := make([]byte, hdr.Size)
					if _, err := io.ReadFull(r, data); err != nil {
						return fmt.Errorf("tar entry %q: %w", hdr.Name, corrupt(err))
					}
					d = st.addSmall(data)
				} else if d, err = st.add(r, hdr.Size); err != nil {
					return fmt.Errorf("tar entry %q: %w", hdr.Name, corrupt(err))
				}
				switch {
				case mapped:
					sp.endSparse(d, hdr.Size, frags, fh.h.Sum(nil))
				case !sparse:
					if sp.n != hdr.Size {
						return fmt.Errorf("tar entry %q: %d bytes in the stream for a %d-byte file (a sparse format not recognized?): %w", hdr.Name, sp.n, hdr.Size, ErrInvalid)
					}
					sp.end(d)
				}
				e.Digest = d
			case tar.TypeLink:
				target, err := cleanPath(hdr.Linkname)
				if err != nil {
					return fmt.Errorf("hard link %q: %w", hdr.Name, err)
				}
				t, ok := byPath[target]
				switch {
				case !ok:
					return fmt.Errorf("tar entry %q: hard link to %q, which is not an earlier entry of this layer: %w", hdr.Name, hdr.Linkname, ErrInvalid)
				case t.Type != TypeReg:
					// Linux can hard-link a symlink or a device, but an image
					// store has no inode of its own for them to share.
					return fmt.Errorf("tar entry %q: hard link to %q, which is a %s: only regular files can be hard-linked in a layer: %w", hdr.Name, hdr.Linkname, t.Type, ErrInvalid)
				}
				if t.HardLink != "" {
					target = t.HardLink
				}
				if target == p {
					return fmt.Errorf("tar entry %q: hard link to itself: %w", hdr.Name, ErrInvalid)
				}
				t = byPath[target]
				linksTo[target] = append(linksTo[target], p)
				e.Type = TypeReg
				e.HardLink = target
				e.Size = t.Size
				e.Digest = t.Digest
				// A hard link shares its target's metadata.
				e.Mode, e.UID, e.GID, e.Mtime, e.Xattrs = t.Mode, t.UID, t.GID, t.Mtime, t.Xattrs
			case tar.TypeSymlink:
				e.Type = TypeSymlink
				e.Link = hdr.Linkname
				e.Mode = 0o777 // what Linux shows for every symlink, whatever the header says
				if strings.IndexByte(e.Link, 0) >= 0 || e.Link == "" {
					return fmt.Errorf("tar entry %q: bad symlink target: %w", hdr.Name, ErrInvalid)
				}
			case tar.TypeDir:
				e.Type = TypeDir
			case tar.TypeChar:
				e.Type = TypeChar
			case tar.TypeBlock:
				e.Type = TypeBlock
			case tar.TypeFifo:
				e.Type = TypeFifo
			default:
				return fmt.Errorf("tar entry %q: unsupported type %q: %w", hdr.Name, hdr.Typeflag, ErrInvalid)
			}
			if e.Type == TypeChar || e.Type == TypeBlock {
				e.Devmajor, e.Devminor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
			}
		}
		if e.Path == "" && e.Type != TypeDir {
			return fmt.Errorf("tar entry %q: the root must be a directory: %w", hdr.Name, ErrInvalid)
		}
		byPath[p] = e // a later entry of the same name wins, as in tar -x
		for q := p; q != ""; q = parentOf(q) {
			dir := parentOf(q)
			if below[dir][q] {
				break
			}
			if below[dir] == nil {
				below[dir] = map[string]bool{}
			}
			below[dir][q] = true
		}
	}
	ing.entries = make([]*Entry, 0, len(byPath))
	for _, e := range byPath {
		ing.entries = append(ing.entries, e)
	}
	sortByKey(ing.entries)
	// The layer holds what its entries name and what its tar split needs
	// (see layerObjects); a file replaced by a later entry is in the latter.
	ing.objects = map[digest.Digest]int64{}
	for _, e := range ing.entries {
		switch {
		case e.Type == TypeReg && e.HardLink == "":
			ing.rec.Size += e.Size // as docker counts: each inode once
			ing.objects[e.Digest] = e.Size
		case e.Type == TypeSymlink:
			ing.rec.Size += int64(len(e.Link)) // as du and docker count a symlink
		}
	}
	for d, n := range sp.objects {
		ing.objects[d] = n
	}
	return nil
}

// isSparse tells a sparse file in any of the GNU and PAX sparse formats.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// clampTime keeps a time inside what int64 nanoseconds hold (years 1678 to
// 2262), rather than letting it wrap.
func clampTime(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func sortByKey(es []*Entry) {
	sort.Slice(es, func(i, j int) bool { return bytes.Compare(Key(es[i].Path), Key(es[j].Path)) < 0 })
}

// freeBytes is the space available to us where dir lives, or -1.
func freeBytes(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
