package transfer

import (
	"errors"
	"io"
	"sync/atomic"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/transfer/registry"
)

// resumable is layer i's Open for a pull that keeps its download in the
// store as it arrives (layerstore.Download): a pull that fails half-way
// leaves what came, and the next one reads that back and asks the
// registry for the rest with a Range request. st counts what happened.
func resumable(s *layerstore.Store, r *registry.Remote, i int, st *resumeStats) func() (io.ReadCloser, error) {
	l := r.Source.Layers[i]
	return func() (io.ReadCloser, error) {
		dl, err := s.OpenDownload(l.Digest)
		if errors.Is(err, layerstore.ErrDownloadBusy) {
			return r.OpenLayer(i, 0) // another pull of it keeps the download
		}
		if err != nil {
			return nil, err
		}
		if dl.Size() > l.Size {
			if err := dl.Restart(); err != nil {
				dl.Discard()
				return nil, err
			}
		}
		rr := &resumeReader{stored: dl.Stored(), dl: dl, st: st}
		if dl.Size() > 0 {
			st.resumed[i].Store(true)
		}
		if dl.Size() < l.Size {
			if rr.rc, err = r.OpenLayer(i, dl.Size()); err != nil {
				dl.Close()
				return nil, err
			}
		}
		return rr, nil
	}
}

// resumeStats is what the downloads of one attempt of a pull did.
type resumeStats struct {
	resumed []atomic.Bool // by layer: its download started from what an earlier pull left
	kept    atomic.Int64  // bytes of downloads kept for the next pull (Pull removes those stored)
}

func newResumeStats(layers int) *resumeStats {
	return &resumeStats{resumed: make([]atomic.Bool, layers)}
}

// reset readies st for another attempt.
func (st *resumeStats) reset() {
	for i := range st.resumed {
		st.resumed[i].Store(false)
	}
	st.kept.Store(0)
}

// resumeReader reads what an earlier pull stored of a blob, then the rest
// from the registry, which it appends to the download.
type resumeReader struct {
	stored io.Reader
	rc     io.ReadCloser // nil when the download holds the whole blob
	dl     *layerstore.Download
	st     *resumeStats
	whole  bool // the blob's end was reached
}

func (r *resumeReader) Read(p []byte) (int, error) {
	if r.stored != nil {
		n, err := r.stored.Read(p)
		if err != io.EOF {
			return n, err
		}
		r.stored = nil
		if n > 0 {
			return n, nil
		}
	}
	if r.rc == nil {
		r.whole = true
		return 0, io.EOF
	}
	n, err := r.rc.Read(p)
	r.dl.Write(p[:n])
	if err == io.EOF {
		r.whole = true
	}
	return n, err
}

// Close keeps the download: flushed when the blob is not whole (the pull
// failed on the way), as it is otherwise (Pull removes it once stored).
func (r *resumeReader) Close() error {
	var err error
	if r.rc != nil {
		err = r.rc.Close()
	}
	if r.whole {
		r.st.kept.Add(r.dl.Size())
		return errors.Join(err, r.dl.Close())
	}
	if r.dl.Size() > 0 && !r.dl.Broken() {
		r.st.kept.Add(r.dl.Size())
	}
	return errors.Join(err, r.dl.Keep())
}
