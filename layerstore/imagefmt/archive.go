package imagefmt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/strata-dev/strata/layerstore"
)

// Formats, as Archive.Format names them.
const (
	FormatOCILayout     = "oci-layout"     // an OCI image layout directory
	FormatOCIArchive    = "oci-archive"    // a tar of an OCI image layout
	FormatDockerArchive = "docker-archive" // what docker save writes
)

// Archive is an opened image archive. Its images are read and verified when
// it is opened; only layer blobs are read later, through LayerBlob.Open. Its
// methods and its layers' Open functions are safe for concurrent use.
type Archive struct {
	format string
	src    source
	images []layerstore.ImageSource

	closeOnce sync.Once
	closeErr  error
}

// Format returns FormatOCILayout, FormatOCIArchive or FormatDockerArchive.
func (a *Archive) Format() string { return a.format }

// Images returns the archive's images in archive order (index.json or
// manifest.json order; an image listed twice appears once, with the names of
// both entries).
func (a *Archive) Images() []layerstore.ImageSource { return slices.Clone(a.images) }

// Close releases the archive's file (and with it the space of a decompressed
// or spooled copy). LayerBlob.Open fails after Close, and readers it returned
// stop working. Calling Close again does nothing.
func (a *Archive) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.src.close() })
	return a.closeErr
}

// Open opens the image archive at path, telling its format by content, not
// by name: an OCI image layout directory, an oci-archive or a docker-archive,
// either of the last two possibly compressed with gzip or zstd (decompressed
// to a temporary file under os.TempDir()). A file that is none of these
// yields an error wrapping layerstore.ErrUnknownFormat.
func Open(path string) (*Archive, error) {
	return OpenIn(path, "")
}

// OpenIn is Open with the directory that holds the decompressed copy of a
// compressed archive, or the spooled copy of a pipe ("" means os.TempDir()).
// A store passes a directory on its own file system.
func OpenIn(path, tmpDir string) (*Archive, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		src, err := openDirSource(path)
		if err != nil {
			return nil, err
		}
		return detect(path, src, FormatOCILayout)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() { // a pipe or a device: spool it, as a stream
		defer f.Close()
		return openStream(path, f, tmpDir)
	}
	var magic [6]byte
	n, err := f.ReadAt(magic[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch c := sniff(magic[:n]); c {
	case CompressionNone:
		return openTar(path, f)
	case CompressionGzip, CompressionZstd:
		defer f.Close()
		tmp, err := tempFile(tmpDir)
		if err != nil {
			return nil, err
		}
		if err := decompress(tmp, f, c); err != nil {
			tmp.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return openTar(path, tmp)
	default:
		f.Close()
		return nil, fmt.Errorf("%s is %w: %s-compressed, which is not supported (decompress it first)", path, layerstore.ErrUnknownFormat, c)
	}
}

// OpenReader spools r (standard input, say) to a temporary file in tmpDir
// ("" means os.TempDir()), decompressing gzip or zstd on the way, and opens
// that as Open would. The file is unlinked as soon as it is created, so
// nothing is left behind even if the process dies; Close frees its space.
func OpenReader(r io.Reader, tmpDir string) (*Archive, error) {
	return openStream(streamName, r, tmpDir)
}

// streamName names an archive read from a reader (in errors), which gives
// no name to an image.
const streamName = "stream"

func openStream(name string, r io.Reader, tmpDir string) (*Archive, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c := sniff(magic)
	if c != CompressionNone && c != CompressionGzip && c != CompressionZstd {
		return nil, fmt.Errorf("%s is %w: %s-compressed, which is not supported (decompress it first)", name, layerstore.ErrUnknownFormat, c)
	}
	tmp, err := tempFile(tmpDir)
	if err != nil {
		return nil, err
	}
	if c == CompressionNone {
		_, err = io.Copy(tmp, br)
	} else {
		err = decompress(tmp, br, c)
	}
	if err != nil {
		tmp.Close()
		return nil, fmt.Errorf("%s: spooling to %s: %w", name, tmp.Name(), err)
	}
	return openTar(name, tmp)
}

// tempFile creates a temporary file in dir and unlinks it at once: it lives
// as long as the open file.
func tempFile(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "strata-imagefmt-*.tar")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f, nil
}

// openTar indexes the tar file f and reads its images; it owns f.
func openTar(name string, f *os.File) (*Archive, error) {
	members, err := indexTar(f)
	if errors.Is(err, errNotTar) {
		f.Close()
		return nil, fmt.Errorf("%s is %w: no index.json or manifest.json (not a directory or a tar file)", name, layerstore.ErrUnknownFormat)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return detect(name, &tarSource{f: f, members: members}, FormatOCIArchive)
}

// detect reads src's images by the format its members show; ociFormat is the
// name of the OCI format src would be. It owns src.
func detect(name string, src source, ociFormat string) (*Archive, error) {
	a := &Archive{src: src}
	var err error
	switch {
	case src.has(dockerManifestFile):
		a.format = FormatDockerArchive
		a.images, err = readDocker(src)
	case src.has("index.json"):
		a.format = ociFormat
		a.images, err = readLayout(src, name)
	default:
		err = fmt.Errorf("%s is %w: no index.json or manifest.json", name, layerstore.ErrUnknownFormat)
		return nil, errors.Join(err, src.close())
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", name, err), src.close())
	}
	return a, nil
}
