package imagefmt

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"

	"github.com/strata-dev/strata/layerstore"
)

// tarSource is a tar file indexed once: every regular member's name maps to
// the offset and size of its data, and members are read as io.SectionReaders
// over the one file, so nothing is extracted and readers run concurrently.
type tarSource struct {
	f       *os.File
	members map[string]tarMember
	closed  atomic.Bool
}

var _ source = (*tarSource)(nil)

type tarMember struct {
	off, size int64 // off -1: a sparse member, which cannot be read
}

// errNotTar: the file does not start with a tar header.
var errNotTar = errors.New("not a tar file")

// maxLinkHops bounds how many symlinks or hard links resolving one member
// may follow, as a loop guard.
const maxLinkHops = 16

// indexTar reads every header of the tar file f (from its start) and returns
// its regular members, with symlinks and hard links (docker-archives written
// by skopeo link <id>/layer.tar to ../<diffid>.tar) resolved to the member
// they name; a dangling link is left out. It fails with errNotTar when the
// first header is not a tar header, and with layerstore.ErrInvalid for a truncated or
// corrupt tar or a member name that escapes the archive. A sparse member is
// indexed but cannot be opened.
func indexTar(f *os.File) (map[string]tarMember, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	// tar.Reader reads f without buffering and skips data with Seek, so
	// after Next the file offset is where the member's data starts.
	tr := tar.NewReader(f)
	members := make(map[string]tarMember)
	links := make(map[string]string) // link name -> clean target member name
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if i == 0 {
				return nil, errNotTar
			}
			break
		}
		if err != nil {
			switch {
			case i == 0 && !errors.As(err, new(*fs.PathError)):
				// Random bytes fail the header checksum; anything but an
				// I/O error this early means the file is no tar at all.
				return nil, fmt.Errorf("%w: %w", errNotTar, err)
			case errors.Is(err, io.ErrUnexpectedEOF):
				return nil, fmt.Errorf("%w tar: truncated after %d members: %w", layerstore.ErrInvalid, i, err)
			default:
				return nil, fmt.Errorf("%w tar: header %d: %w", layerstore.ErrInvalid, i+1, err)
			}
		}
		name, err := cleanMember(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			if hdr.Typeflag == tar.TypeGNUSparse || isSparse(hdr) {
				// Its data is not one contiguous run of hdr.Size bytes. No
				// image tool writes a blob so; a rootfs tar may hold one.
				members[name] = tarMember{off: -1}
				delete(links, name)
				continue
			}
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, err
			}
			if hdr.Size < 0 || off+hdr.Size > fi.Size() {
				return nil, fmt.Errorf("%w tar: truncated in member %q (%d bytes at offset %d, file is %d bytes): %w",
					layerstore.ErrInvalid, name, hdr.Size, off, fi.Size(), io.ErrUnexpectedEOF)
			}
			members[name] = tarMember{off: off, size: hdr.Size}
			delete(links, name)
		case tar.TypeSymlink, tar.TypeLink:
			delete(members, name)
			delete(links, name)
			target := hdr.Linkname
			if hdr.Typeflag == tar.TypeSymlink && !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			// A link that is absolute or climbs out names nothing inside
			// the archive: it is left out, like a dangling one.
			if target, err := cleanMember(target); err == nil {
				links[name] = target
			}
		default:
			delete(members, name)
			delete(links, name)
		}
	}
	for name, target := range links {
		for hop := 0; hop < maxLinkHops; hop++ {
			if m, ok := members[target]; ok {
				members[name] = m
				break
			}
			next, ok := links[target]
			if !ok {
				break
			}
			target = next
		}
	}
	return members, nil
}

func isSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func (t *tarSource) open(name string) (io.ReadCloser, int64, error) {
	if t.closed.Load() {
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: os.ErrClosed}
	}
	m, ok := t.members[name]
	if !ok {
		return nil, 0, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if m.off < 0 {
		return nil, 0, fmt.Errorf("%w tar member %q: sparse members are not supported", layerstore.ErrInvalid, name)
	}
	return io.NopCloser(io.NewSectionReader(t.f, m.off, m.size)), m.size, nil
}

func (t *tarSource) has(name string) bool {
	_, ok := t.members[name]
	return ok
}

func (t *tarSource) close() error {
	t.closed.Store(true)
	return t.f.Close()
}
