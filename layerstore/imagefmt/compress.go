package imagefmt

import (
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/strata-dev/strata/layerstore"
)

// sniff names the compression magic starts with: "gzip", "zstd", "xz",
// "bzip2", or "none" for anything else (a tar, or bytes that are no image).
func sniff(magic []byte) string {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return CompressionGzip
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return CompressionZstd
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return "xz"
	case bytes.HasPrefix(magic, []byte("BZh")):
		return "bzip2"
	}
	return CompressionNone
}

// decompress copies the decompressed bytes of r, compressed as c ("gzip" or
// "zstd"), to w. Corrupt input is an error wrapping layerstore.ErrInvalid.
func decompress(w io.Writer, r io.Reader, c string) error {
	var zr io.Reader
	switch c {
	case CompressionGzip:
		gr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%w gzip stream: %w", layerstore.ErrInvalid, err)
		}
		defer gr.Close()
		zr = gr
	case CompressionZstd:
		dr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("%w zstd stream: %w", layerstore.ErrInvalid, err)
		}
		defer dr.Close()
		zr = dr
	default:
		return fmt.Errorf("%w: unsupported compression %s", layerstore.ErrInvalid, c)
	}
	ew := &errWriter{w: w}
	if _, err := io.Copy(ew, zr); err != nil {
		if ew.err != nil { // the temp file's fault (a full disk), not the input's
			return ew.err
		}
		return fmt.Errorf("%w %s stream: %w", layerstore.ErrInvalid, c, err)
	}
	return nil
}

// errWriter remembers the error its writer returned.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}
