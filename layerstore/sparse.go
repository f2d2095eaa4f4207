package layerstore

import (
	"archive/tar"
	"bytes"
	"hash"
	"strconv"
	"strings"
)

// Sparse files in a tar stream hold only their data fragments, packed; the
// sparse map says where each fragment lies in the file. archive/tar expands
// them and does not expose the map, so the importer reads it from the raw
// header bytes itself (the splitter keeps those of the current entry): then
// the tar split can name each fragment as a range of the file's object
// instead of keeping the packed data a second time.
//
// Formats, as GNU tar writes them and archive/tar reads them:
//
//	GNU 'S' (gnu, oldgnu): 4 entries in the header, then extension blocks
//	                       of 21 while the "isextended" byte is set
//	PAX 0.0, 0.1:          GNU.sparse.map (archive/tar folds the 0.0
//	                       offset/numbytes records into it)
//	PAX 1.0:               a text map at the start of the data area,
//	                       padded to a block (archive/tar reads it in Next)

// sparseFrag is one data fragment of a sparse file: length bytes at offset.
type sparseFrag struct{ offset, length int64 }

const blockSize = 512

// sparseMap returns the data fragments of the sparse file hdr, read from raw,
// the bytes the tar reader consumed for this entry starting at stream offset
// start (the previous entry's padding, then its headers). It reports false
// when the map cannot be read; the caller then keeps the data literal.
func sparseMap(hdr *tar.Header, raw []byte, start int64) ([]sparseFrag, bool) {
	// The same choice of format as archive/tar's.
	if hdr.Typeflag == tar.TypeGNUSparse {
		blk, rest, ok := mainHeader(raw, start)
		if !ok || blk[156] != tar.TypeGNUSparse {
			return nil, false
		}
		return sparseMapGNU(blk, rest)
	}
	major, minor := hdr.PAXRecords["GNU.sparse.major"], hdr.PAXRecords["GNU.sparse.minor"]
	switch {
	case major == "1" && minor == "0":
		_, rest, ok := mainHeader(raw, start)
		if !ok {
			return nil, false
		}
		return sparseMap1x0(rest)
	case major == "0" && (minor == "0" || minor == "1"), major == "" && minor == "" && hdr.PAXRecords["GNU.sparse.map"] != "":
		return sparseMap0x1(hdr.PAXRecords["GNU.sparse.map"], hdr.PAXRecords["GNU.sparse.numblocks"])
	}
	return nil, false
}

// mainHeader skips the padding before the entry and its meta headers (PAX
// records, GNU long names) and returns its main header block and what
// follows it.
func mainHeader(raw []byte, start int64) (blk, rest []byte, ok bool) {
	pos := int((blockSize - start%blockSize) % blockSize)
	for pos+blockSize <= len(raw) {
		blk := raw[pos : pos+blockSize]
		switch blk[156] {
		case tar.TypeXHeader, tar.TypeXGlobalHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			size, ok := parseNumeric(blk[124:136])
			if !ok || size < 0 || size > int64(len(raw)) {
				return nil, nil, false
			}
			pos += blockSize + int((size+blockSize-1)/blockSize*blockSize)
			continue
		}
		return blk, raw[pos+blockSize:], true
	}
	return nil, nil, false
}

// sparseMapGNU reads the old GNU map: entries of a 12-byte offset and a
// 12-byte length, 4 in the header at byte 386 (the "isextended" flag at
// 482), 21 in each extension block (the flag at 504).
func sparseMapGNU(blk, ext []byte) ([]sparseFrag, bool) {
	var out []sparseFrag
	entries, n, flag := blk[386:], 4, blk[482]
	for {
		for i := 0; i < n; i++ {
			e := entries[i*24 : i*24+24]
			if e[0] == 0 {
				break
			}
			off, ok1 := parseNumeric(e[:12])
			length, ok2 := parseNumeric(e[12:])
			if !ok1 || !ok2 {
				return nil, false
			}
			out = append(out, sparseFrag{off, length})
		}
		if flag == 0 {
			return out, true
		}
		if len(ext) < blockSize {
			return nil, false
		}
		entries, n, flag, ext = ext[:blockSize], 21, ext[504], ext[blockSize:]
	}
}

// sparseMap0x1 reads "offset,length,offset,length,…".
func sparseMap0x1(s, count string) ([]sparseFrag, bool) {
	var nums []string
	if s != "" {
		nums = strings.Split(s, ",")
	}
	if n, err := strconv.Atoi(count); err != nil || 2*n != len(nums) {
		return nil, false
	}
	return pairs(nums)
}

// sparseMap1x0 reads the map at the start of the data area: the number of
// entries, then an offset and a length per entry, each on its own line.
func sparseMap1x0(b []byte) ([]sparseFrag, bool) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return nil, false
	}
	n, err := strconv.Atoi(string(b[:nl]))
	if err != nil || n < 0 || n > len(b) {
		return nil, false
	}
	fields := strings.SplitN(string(b[nl+1:]), "\n", 2*n+1)
	if len(fields) < 2*n {
		return nil, false
	}
	return pairs(fields[:2*n])
}

func pairs(nums []string) ([]sparseFrag, bool) {
	out := make([]sparseFrag, 0, len(nums)/2)
	for i := 0; i+1 < len(nums); i += 2 {
		off, err1 := strconv.ParseInt(nums[i], 10, 64)
		length, err2 := strconv.ParseInt(nums[i+1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, false
		}
		out = append(out, sparseFrag{off, length})
	}
	return out, true
}

// parseNumeric reads a tar numeric field: octal, padded with NULs and
// spaces, or base-256 when the top bit is set (non-negative values only).
func parseNumeric(b []byte) (int64, bool) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		if b[0]&0x40 != 0 {
			return 0, false
		}
		var x uint64
		for i, c := range b {
			if i == 0 {
				c &= 0x7f
			}
			if x>>55 != 0 {
				return 0, false
			}
			x = x<<8 | uint64(c)
		}
		return int64(x), true
	}
	b = bytes.Trim(b, " \x00")
	if len(b) == 0 {
		return 0, true
	}
	x, err := strconv.ParseInt(string(b), 8, 64)
	return x, err == nil
}

// validFrags reports whether frags are in order, do not overlap and lie
// within a file of size bytes, and returns the bytes of data they hold.
func validFrags(frags []sparseFrag, size int64) (int64, bool) {
	var end, total int64
	for _, f := range frags {
		if f.offset < end || f.length < 0 || f.offset > size || f.length > size-f.offset {
			return 0, false
		}
		end = f.offset + f.length
		total += f.length
	}
	return total, true
}

// fragHasher hashes the bytes of a sparse file's expanded content (written
// to it in order) that lie in its data fragments: what the tar stream held.
type fragHasher struct {
	h     hash.Hash
	frags []sparseFrag
	pos   int64
}

func (f *fragHasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		for len(f.frags) > 0 && f.frags[0].offset+f.frags[0].length <= f.pos {
			f.frags = f.frags[1:]
		}
		if len(f.frags) == 0 {
			f.pos += int64(len(p))
			break
		}
		fr := f.frags[0]
		if f.pos < fr.offset {
			k := min(int64(len(p)), fr.offset-f.pos)
			f.pos += k
			p = p[k:]
			continue
		}
		k := min(int64(len(p)), fr.offset+fr.length-f.pos)
		f.h.Write(p[:k])
		f.pos += k
		p = p[k:]
	}
	return n, nil
}
