package layerstore

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Type is the kind of a layer or tree entry.
type Type uint8

// Entry types. Whiteout and Opaque occur only in layers, never in merged trees.
const (
	TypeReg Type = iota + 1
	TypeDir
	TypeSymlink
	TypeChar
	TypeBlock
	TypeFifo
	TypeWhiteout // name ".wh.X": X and everything below it is deleted
	TypeOpaque   // name ".wh..wh..opq": the directory hides what lower layers gave it
)

// OCI whiteout name prefixes.
const (
	WhiteoutPrefix = ".wh."
	OpaqueName     = ".wh..wh..opq"
)

func (t Type) String() string {
	switch t {
	case TypeReg:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeChar:
		return "char"
	case TypeBlock:
		return "block"
	case TypeFifo:
		return "fifo"
	case TypeWhiteout:
		return "whiteout"
	case TypeOpaque:
		return "opaque"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// FileMode is the io/fs type bits of t.
func (t Type) FileMode() fs.FileMode {
	switch t {
	case TypeDir:
		return fs.ModeDir
	case TypeSymlink:
		return fs.ModeSymlink
	case TypeChar:
		return fs.ModeDevice | fs.ModeCharDevice
	case TypeBlock:
		return fs.ModeDevice
	case TypeFifo:
		return fs.ModeNamedPipe
	}
	return 0
}

// Entry is one file system entry of a layer or of a merged tree.
type Entry struct {
	Path     string // cleaned, relative, "/"-separated; "" is the root directory
	Type     Type
	Mode     uint32 // permission bits with setuid, setgid and sticky (07777)
	UID, GID uint32
	Size     int64         // regular files: content length
	Mtime    int64         // unix nanoseconds
	Link     string        // symlink target, as stored in the tar
	HardLink string        // layers only: path of an earlier entry of the same layer this one links to
	Devmajor uint32        // char and block devices
	Devminor uint32        //
	Digest   digest.Digest // regular files: sha256 of the content
	Xattrs   map[string]string
	Ino      uint64 // trees only: inode number, stable for the tree; shared by hard links
	Nlink    uint32 // trees only: number of names with this Ino

	rec uint32 // trees only: record number + 1 in the tree it came from (0: none)
}

// Name is the last element of e.Path.
func (e *Entry) Name() string {
	if i := strings.LastIndexByte(e.Path, '/'); i >= 0 {
		return e.Path[i+1:]
	}
	return e.Path
}

// UnixMode is the mode as stat(2) reports it: type bits and permission bits.
func (e *Entry) UnixMode() uint32 { return e.Type.UnixMode(e.Mode) }

// UnixMode is perm (07777 bits) with t's type bits, as stat(2) reports it.
func (t Type) UnixMode(perm uint32) uint32 {
	const (
		sIFREG = 0o100000
		sIFDIR = 0o040000
		sIFLNK = 0o120000
		sIFCHR = 0o020000
		sIFBLK = 0o060000
		sIFIFO = 0o010000
	)
	m := perm & 0o7777
	switch t {
	case TypeDir:
		return m | sIFDIR
	case TypeSymlink:
		return m | sIFLNK
	case TypeChar:
		return m | sIFCHR
	case TypeBlock:
		return m | sIFBLK
	case TypeFifo:
		return m | sIFIFO
	}
	return m | sIFREG
}

// Key is the bbolt key of a path: parent + "\x00" + name, so that the children
// of one directory form one contiguous key range. The root's key is "/".
func Key(path string) []byte {
	if path == "" {
		return []byte(rootKey)
	}
	i := strings.LastIndexByte(path, '/')
	k := make([]byte, 0, len(path)+1)
	if i < 0 {
		k = append(k, 0)
		return append(k, path...)
	}
	k = append(k, path[:i]...)
	k = append(k, 0)
	return append(k, path[i+1:]...)
}

// ChildPrefix is the key prefix shared by all children of dir.
func ChildPrefix(dir string) []byte {
	k := make([]byte, 0, len(dir)+1)
	k = append(k, dir...)
	return append(k, 0)
}

// PathOfKey inverts Key.
func PathOfKey(k []byte) string {
	if string(k) == rootKey {
		return ""
	}
	i := indexByte(k, 0)
	if i <= 0 {
		return string(k[i+1:])
	}
	return string(k[:i]) + "/" + string(k[i+1:])
}

const rootKey = "/"

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// Entry value encoding, version 1: a version byte, then fields in a fixed
// order, integers as uvarints (mtime as a varint), strings length-prefixed.
// The path is not in the value: it is the key.
const entryEncodingV1 = 1

// MarshalBinary encodes e without its path.
func (e *Entry) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+len(e.Link)+len(e.HardLink))
	b = append(b, entryEncodingV1, byte(e.Type))
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = binary.AppendUvarint(b, uint64(e.UID))
	b = binary.AppendUvarint(b, uint64(e.GID))
	b = binary.AppendUvarint(b, uint64(e.Size))
	b = binary.AppendVarint(b, e.Mtime)
	b = appendString(b, e.Link)
	b = appendString(b, e.HardLink)
	b = binary.AppendUvarint(b, uint64(e.Devmajor))
	b = binary.AppendUvarint(b, uint64(e.Devminor))
	b = appendString(b, string(e.Digest))
	b = binary.AppendUvarint(b, e.Ino)
	b = binary.AppendUvarint(b, uint64(e.Nlink))
	keys := make([]string, 0, len(e.Xattrs))
	for k := range e.Xattrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, e.Xattrs[k])
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; e.Path is left alone.
func (e *Entry) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	if v := d.byte(); v != entryEncodingV1 {
		return fmt.Errorf("entry encoding version %d: %w", v, ErrCorrupt)
	}
	e.Type = Type(d.byte())
	e.Mode = uint32(d.uvarint())
	e.UID = uint32(d.uvarint())
	e.GID = uint32(d.uvarint())
	e.Size = int64(d.uvarint())
	e.Mtime = d.varint()
	e.Link = d.string()
	e.HardLink = d.string()
	e.Devmajor = uint32(d.uvarint())
	e.Devminor = uint32(d.uvarint())
	e.Digest = digest.Digest(d.string())
	e.Ino = d.uvarint()
	e.Nlink = uint32(d.uvarint())
	n := d.uvarint()
	e.Xattrs = nil
	if n > 0 && d.err == nil {
		if n > uint64(len(b)) {
			return fmt.Errorf("entry xattr count %d: %w", n, ErrCorrupt)
		}
		e.Xattrs = make(map[string]string, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.string()
			e.Xattrs[k] = d.string()
		}
	}
	if d.err != nil {
		return d.err
	}
	if e.Type < TypeReg || e.Type > TypeOpaque {
		return fmt.Errorf("entry type %d: %w", e.Type, ErrCorrupt)
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("truncated entry: %w", ErrCorrupt)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
