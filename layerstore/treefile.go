package layerstore

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"unsafe"

	"github.com/opencontainers/go-digest"
)

// The tree file: the merged tree of a chain, written once, read in place
// (memory-mapped by every mount of the chain, so all of them share the same
// page-cache pages). Little-endian throughout.
//
//	header   64 bytes: magic "strtree1", u32 version (1), u32 record size
//	         (72), u32 entry count, u32 0, u64 NextIno, u64 string table
//	         offset, u64 string table length, 16 bytes of zeros
//	records  count × 72 bytes, breadth first from the root (record 0), so the
//	         children of a directory are one contiguous run, sorted by name
//	strings  paths, link targets, digests ("sha256:<hex>") and xattr blobs,
//	         referred to by offset; offset 0 holds one zero byte and means none
//
// A record:
//
//	0  u32 path offset   4  u32 path length   8  u8 name length (the name is
//	the path's last bytes)   9  u8 Type   10 u16 0   12 u32 mode (07777)
//	16 u32 uid   20 u32 gid   24 u32 nlink   28 u32 parent record
//	32 u64 inode   40 i64 size   48 i64 mtime (unix ns)
//	56 u32 a   60 u32 b: directory: first child record, child count;
//	   symlink: target offset, length; regular file: digest offset,
//	   length; device: major, minor
//	64 u32 xattr blob offset (0: none): uvarint count, then per xattr,
//	   sorted by name, uvarint length + name, uvarint length + value
//	68 u32 0
//
// The encoding is a function of the tree alone (children by name, strings in
// record order, each distinct link target, digest or xattr blob stored once),
// so the file of a chain is the same bytes however often it is built: check
// rebuilds it from the layers and compares.
const (
	treeMagic      = "strtree1"
	treeVersion    = 1
	treeHeaderSize = 64
	treeRecordSize = 72
)

// encodeTree writes the tree whose entries are all (by path, "" the root)
// and whose directories' children are kids.
func encodeTree(all map[string]*Entry, kids map[string][]*Entry, nextIno uint64) []byte {
	order := make([]*Entry, 0, len(all))
	parent := make([]uint32, 0, len(all))
	first := map[string]uint32{}
	order = append(order, all[""])
	parent = append(parent, 0)
	for i := 0; i < len(order); i++ {
		e := order[i]
		if e.Type != TypeDir {
			continue
		}
		first[e.Path] = uint32(len(order))
		for _, c := range kids[e.Path] {
			order = append(order, c)
			parent = append(parent, uint32(i))
		}
	}
	strs := []byte{0}
	dedup := map[string]uint32{}
	str := func(s string, share bool) (uint32, uint32) {
		if s == "" {
			return 0, 0
		}
		if off, ok := dedup[s]; ok && share {
			return off, uint32(len(s))
		}
		off := uint32(len(strs))
		strs = append(strs, s...)
		if share {
			dedup[s] = off
		}
		return off, uint32(len(s))
	}
	recs := make([]byte, len(order)*treeRecordSize)
	le := binary.LittleEndian
	for i, e := range order {
		r := recs[i*treeRecordSize : (i+1)*treeRecordSize]
		po, pl := str(e.Path, false)
		le.PutUint32(r[0:], po)
		le.PutUint32(r[4:], pl)
		r[8] = byte(len(e.Name()))
		r[9] = byte(e.Type)
		le.PutUint32(r[12:], e.Mode&0o7777)
		le.PutUint32(r[16:], e.UID)
		le.PutUint32(r[20:], e.GID)
		le.PutUint32(r[24:], e.Nlink)
		le.PutUint32(r[28:], parent[i])
		le.PutUint64(r[32:], e.Ino)
		le.PutUint64(r[40:], uint64(e.Size))
		le.PutUint64(r[48:], uint64(e.Mtime))
		var a, b uint32
		switch e.Type {
		case TypeDir:
			a, b = first[e.Path], uint32(len(kids[e.Path]))
		case TypeSymlink:
			a, b = str(e.Link, true)
		case TypeReg:
			a, b = str(string(e.Digest), true)
		case TypeChar, TypeBlock:
			a, b = e.Devmajor, e.Devminor
		}
		le.PutUint32(r[56:], a)
		le.PutUint32(r[60:], b)
		if len(e.Xattrs) > 0 {
			off, _ := str(string(xattrBlob(e.Xattrs)), true)
			le.PutUint32(r[64:], off)
		}
	}
	out := make([]byte, treeHeaderSize, treeHeaderSize+len(recs)+len(strs))
	copy(out, treeMagic)
	le.PutUint32(out[8:], treeVersion)
	le.PutUint32(out[12:], treeRecordSize)
	le.PutUint32(out[16:], uint32(len(order)))
	le.PutUint64(out[24:], nextIno)
	le.PutUint64(out[32:], uint64(treeHeaderSize+len(recs)))
	le.PutUint64(out[40:], uint64(len(strs)))
	out = append(out, recs...)
	return append(out, strs...)
}

func xattrBlob(x map[string]string) []byte {
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := binary.AppendUvarint(nil, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, x[k])
	}
	return b
}

// treeData is a tree file in memory (mapped or not), checked by parseTree
// so that no accessor can reach outside it.
type treeData struct {
	b       []byte
	n       uint32
	nextIno uint64
	recs    []byte
	strs    []byte
}

// parseTree checks the structure of a tree file: every offset inside it,
// every directory's children after it and naming it as their parent (so
// the records form one tree and every walk ends). Cost: one pass over the
// records, no allocation.
func parseTree(b []byte) (*treeData, error) {
	bad := func(why string, args ...any) error {
		return fmt.Errorf("tree file: %s: %w", fmt.Sprintf(why, args...), ErrCorrupt)
	}
	le := binary.LittleEndian
	if len(b) < treeHeaderSize || string(b[:8]) != treeMagic {
		return nil, bad("no tree header")
	}
	if v := le.Uint32(b[8:]); v != treeVersion {
		return nil, bad("version %d", v)
	}
	if rs := le.Uint32(b[12:]); rs != treeRecordSize {
		return nil, bad("record size %d", rs)
	}
	n := le.Uint32(b[16:])
	so, sl := le.Uint64(b[32:]), le.Uint64(b[40:])
	if n == 0 || so != treeHeaderSize+uint64(n)*treeRecordSize || so+sl != uint64(len(b)) || sl == 0 {
		return nil, bad("sizes do not add up")
	}
	d := &treeData{b: b, n: n, nextIno: le.Uint64(b[24:]), recs: b[treeHeaderSize:so], strs: b[so:]}
	inStrs := func(off, l uint32) bool { return uint64(off)+uint64(l) <= sl && (off > 0 || l == 0) }
	for i := uint32(0); i < n; i++ {
		r := d.rec(i)
		pl, nl := le.Uint32(r[4:]), uint32(r[8])
		if !inStrs(le.Uint32(r[0:]), pl) || nl > pl || (i > 0 && nl == 0) {
			return nil, bad("record %d: path out of bounds", i)
		}
		t := Type(r[9])
		if t < TypeReg || t > TypeFifo {
			return nil, bad("record %d: type %d", i, t)
		}
		if i == 0 && t != TypeDir {
			return nil, bad("root is a %s", t)
		}
		a, c := le.Uint32(r[56:]), le.Uint32(r[60:])
		switch t {
		case TypeDir:
			if c > 0 && (a <= i || uint64(a)+uint64(c) > uint64(n)) {
				return nil, bad("record %d: children out of bounds", i)
			}
			for j := a; j < a+c; j++ {
				if le.Uint32(d.rec(j)[28:]) != i {
					return nil, bad("record %d: child %d names another parent", i, j)
				}
			}
		case TypeSymlink, TypeReg:
			if !inStrs(a, c) {
				return nil, bad("record %d: string out of bounds", i)
			}
			// A digest names a path under objects/: only a valid sha256 may.
			// Checked by hand: digest.Validate's regexp, once per file,
			// was most of a Debian image's mount start.
			if t == TypeReg && c > 0 && !isSHA256(d.strs[a:a+c]) {
				return nil, bad("record %d: not a sha256 digest", i)
			}
		}
		if xo := le.Uint32(r[64:]); xo != 0 {
			if uint64(xo) >= sl {
				return nil, bad("record %d: xattrs out of bounds", i)
			}
			if _, err := decodeXattrs(d.strs[xo:]); err != nil {
				return nil, bad("record %d: xattrs: %v", i, err)
			}
		}
	}
	return d, nil
}

func (d *treeData) rec(i uint32) []byte {
	return d.recs[uint64(i)*treeRecordSize : uint64(i+1)*treeRecordSize]
}

// str returns bytes of the string table as a string without copying: the
// table never changes while the tree is open.
func (d *treeData) str(off, l uint32) string {
	if l == 0 {
		return ""
	}
	return unsafe.String(&d.strs[off], int(l))
}

func (d *treeData) path(i uint32) string {
	r := d.rec(i)
	le := binary.LittleEndian
	return d.str(le.Uint32(r[0:]), le.Uint32(r[4:]))
}

func (d *treeData) name(i uint32) string {
	p := d.path(i)
	return p[len(p)-int(d.rec(i)[8]):]
}

// entry decodes record i. Its strings point into the tree's memory.
func (d *treeData) entry(i uint32) *Entry {
	e := &Entry{}
	d.fill(i, e)
	return e
}

func (d *treeData) fill(i uint32, e *Entry) {
	r := d.rec(i)
	le := binary.LittleEndian
	*e = Entry{
		Path:  d.path(i),
		Type:  Type(r[9]),
		Mode:  le.Uint32(r[12:]),
		UID:   le.Uint32(r[16:]),
		GID:   le.Uint32(r[20:]),
		Nlink: le.Uint32(r[24:]),
		Ino:   le.Uint64(r[32:]),
		Size:  int64(le.Uint64(r[40:])),
		Mtime: int64(le.Uint64(r[48:])),
		rec:   i + 1,
	}
	a, b := le.Uint32(r[56:]), le.Uint32(r[60:])
	switch e.Type {
	case TypeSymlink:
		e.Link = d.str(a, b)
	case TypeReg:
		e.Digest = digest.Digest(d.str(a, b))
	case TypeChar, TypeBlock:
		e.Devmajor, e.Devminor = a, b
	}
	if xo := le.Uint32(r[64:]); xo != 0 {
		e.Xattrs, _ = decodeXattrs(d.strs[xo:]) // checked by parseTree
	}
}

// children is the record range of directory i's children.
func (d *treeData) children(i uint32) (first, count uint32) {
	r := d.rec(i)
	if Type(r[9]) != TypeDir {
		return 0, 0
	}
	le := binary.LittleEndian
	return le.Uint32(r[56:]), le.Uint32(r[60:])
}

// child finds name among directory i's children (binary search).
func (d *treeData) child(i uint32, name string) (uint32, bool) {
	first, count := d.children(i)
	lo, hi := first, first+count
	for lo < hi {
		m := lo + (hi-lo)/2
		switch c := strings.Compare(d.name(m), name); {
		case c == 0:
			return m, true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return 0, false
}

// lookup resolves a store path from the root.
func (d *treeData) lookup(p string) (uint32, bool) {
	i := uint32(0)
	for p != "" {
		name, rest, _ := strings.Cut(p, "/")
		j, ok := d.child(i, name)
		if !ok {
			return 0, false
		}
		i, p = j, rest
	}
	return i, true
}

// xattr finds one xattr of record i in its blob (its bounds checked by
// parseTree).
func (d *treeData) xattr(i uint32, name string) (string, bool) {
	xo := binary.LittleEndian.Uint32(d.rec(i)[64:])
	if xo == 0 {
		return "", false
	}
	b := d.strs[xo:]
	n, k := binary.Uvarint(b)
	b = b[k:]
	next := func() string {
		l, k := binary.Uvarint(b)
		s := unsafe.String(unsafe.SliceData(b[k:]), int(l))
		b = b[k+int(l):]
		return s
	}
	for range n {
		k, v := next(), next()
		if k == name {
			return v, true
		}
	}
	return "", false
}

func decodeXattrs(b []byte) (map[string]string, error) {
	d := decoder{b: b}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(b)) {
		return nil, fmt.Errorf("xattr count: %w", ErrCorrupt)
	}
	x := make(map[string]string, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.string()
		x[k] = d.string()
	}
	return x, d.err
}

// isSHA256 reports whether b is "sha256:" and 64 lowercase hex digits, what
// digest.Digest.Validate accepts for sha256.
func isSHA256(b []byte) bool {
	const prefix = "sha256:"
	return len(b) == len(prefix)+64 && string(b[:len(prefix)]) == prefix && isHex64(b[len(prefix):])
}
