package layerstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// A Download keeps the bytes of a blob a pull streams into the store as
// they arrive, in downloads/<hex of the blob digest>, so that a pull that
// fails on the way (the registry went away, the network broke, Ctrl-C)
// leaves them for the next pull of that blob, which reads them back and
// asks the registry for the rest only. They are unverified: the blob's
// digest is checked over the whole stream, stored bytes and new ones, as
// for any blob. A crash leaves at worst a file that is short or (after a
// power loss) wrong, which that check catches. Check lists downloads
// (CheckReport.Downloads), as neither a problem nor garbage; GC removes
// them.
type Download struct {
	f    *os.File
	path string
	size int64 // what the file held when opened
	err  error // a failed write: the file is no longer a prefix of the blob
}

// ErrDownloadBusy is OpenDownload's answer when another pull is
// downloading the same blob into this store.
var ErrDownloadBusy = errors.New("another pull is downloading this blob")

func (s *Store) downloadsDir() string { return filepath.Join(s.root, "downloads") }

// OpenDownload opens blob d's download, made empty when there is none yet,
// and holds it (an flock) until Keep or Discard.
func (s *Store) OpenDownload(d digest.Digest) (*Download, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("download %q: %w: %w", d, err, ErrInvalid)
	}
	if err := os.MkdirAll(s.downloadsDir(), 0o700); err != nil {
		return nil, err
	}
	p := filepath.Join(s.downloadsDir(), d.Encoded())
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("download %s: %w", d, ErrDownloadBusy)
			}
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		// The holder before us may have removed the file between our open
		// and our lock (Discard): then the lock is on a file no longer at
		// the path, and another pull may already hold the one that is.
		at, err := os.Stat(p)
		if err == nil && os.SameFile(fi, at) {
			return &Download{f: f, path: p, size: fi.Size()}, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
}

// Size is how many bytes an earlier pull left.
func (dl *Download) Size() int64 { return dl.size }

// Stored reads back what an earlier pull left.
func (dl *Download) Stored() io.Reader { return io.NewSectionReader(dl.f, 0, dl.size) }

// Restart empties the download: what it held is of no use.
func (dl *Download) Restart() error {
	dl.size = 0
	return dl.f.Truncate(0)
}

// Write appends bytes that just arrived. A write that fails does not fail
// the pull: the download is then dropped at the end instead of kept.
func (dl *Download) Write(p []byte) (int, error) {
	if dl.err == nil {
		_, dl.err = dl.f.WriteAt(p, dl.size)
		dl.size += int64(len(p))
	}
	return len(p), nil
}

// Broken reports whether a write failed: Keep then discards the download
// rather than keep bytes that are not the blob's beginning.
func (dl *Download) Broken() bool { return dl.err != nil }

// Keep flushes the download for the next pull and lets it go: the pull
// failed before the blob was whole.
func (dl *Download) Keep() error {
	if dl.err != nil {
		return dl.Discard()
	}
	return errors.Join(dl.f.Sync(), dl.f.Close())
}

// Close lets the download go as it is, unflushed: the blob is whole, and
// unless the pull fails after all, RemoveDownload is next.
func (dl *Download) Close() error {
	if dl.err != nil {
		return dl.Discard()
	}
	return dl.f.Close()
}

// RemoveDownload removes blob d's download, unless a pull holds it.
func (s *Store) RemoveDownload(d digest.Digest) error {
	if _, err := os.Stat(filepath.Join(s.downloadsDir(), d.Encoded())); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	dl, err := s.OpenDownload(d)
	if errors.Is(err, ErrDownloadBusy) {
		return nil
	}
	if err != nil {
		return err
	}
	return dl.Discard()
}

// Discard removes the download: the blob arrived whole (it is in the store
// or was refused), or what was written is not its beginning.
func (dl *Download) Discard() error {
	return errors.Join(os.Remove(dl.path), dl.f.Close())
}

// downloads lists the downloads under downloads/ and their sizes.
func (s *Store) downloads() (map[string]int64, []string, error) {
	names, err := readDirNames(s.downloadsDir())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	out := map[string]int64{}
	var other []string
	for _, n := range names {
		fi, err := os.Lstat(filepath.Join(s.downloadsDir(), n))
		if err != nil || !fi.Mode().IsRegular() || digest.NewDigestFromEncoded(digest.SHA256, n).Validate() != nil {
			other = append(other, n)
			continue
		}
		out[n] = fi.Size()
	}
	return out, other, nil
}
