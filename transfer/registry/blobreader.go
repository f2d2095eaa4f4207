package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// blobReader reads one blob and, when the connection breaks (the registry
// restarted, a proxy cut it), asks again from where it stopped with an HTTP
// Range request, up to retries times. It verifies nothing: the store hashes
// every byte it is given against the blob's digest.
type blobReader struct {
	ctx     context.Context
	blobs   registry.BlobStore
	desc    ocispec.Descriptor
	rc      io.ReadCloser
	off     int64
	retries int
	count   *atomic.Int64 // bytes received, for the client's total
	release func()
}

func (b *blobReader) Read(p []byte) (int, error) {
	for attempt := 0; ; attempt++ {
		if b.rc == nil {
			if err := b.reopen(); err != nil {
				// A 4xx will not change on asking again; a 5xx (a
				// proxy whose registry is restarting) may.
				var er *errcode.ErrorResponse
				if attempt >= b.retries || b.ctx.Err() != nil || errors.As(err, &er) && er.StatusCode < 500 {
					return 0, explain(fmt.Sprintf("blob %s at byte %d of %d, attempt %d", b.desc.Digest, b.off, b.desc.Size, attempt+1), err)
				}
				b.wait(attempt)
				continue
			}
		}
		n, err := b.rc.Read(p)
		b.off += int64(n)
		b.count.Add(int64(n))
		if err == nil || n > 0 && err != io.EOF {
			if err != nil {
				b.drop()
			}
			return n, nil
		}
		if err == io.EOF && b.off >= b.desc.Size {
			return n, io.EOF
		}
		// A short body or a broken connection: resume.
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.drop()
		if attempt >= b.retries || b.ctx.Err() != nil {
			return n, fmt.Errorf("blob %s at byte %d of %d, attempt %d: %w", b.desc.Digest, b.off, b.desc.Size, attempt+1, err)
		}
		if n > 0 {
			return n, nil
		}
		b.wait(attempt)
	}
}

func (b *blobReader) wait(attempt int) {
	t := time.NewTimer(time.Duration(100<<attempt) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-b.ctx.Done():
	}
}

func (b *blobReader) drop() {
	if b.rc != nil {
		b.rc.Close()
		b.rc = nil
	}
}

// reopen fetches the blob again and seeks to b.off: a Range request where
// the registry offers them, else the bytes before b.off are read and
// dropped.
func (b *blobReader) reopen() error {
	rc, err := b.blobs.Fetch(b.ctx, b.desc)
	if err != nil {
		return err
	}
	if b.off == 0 {
		b.rc = rc
		return nil
	}
	if s, ok := rc.(io.Seeker); ok {
		// To the end and back: oras's seeker sends the Range request on
		// a change of position.
		if _, err := s.Seek(0, io.SeekEnd); err == nil {
			if _, err := s.Seek(b.off, io.SeekStart); err != nil {
				rc.Close()
				return err
			}
			b.rc = rc
			return nil
		}
	}
	if _, err := io.CopyN(io.Discard, rc, b.off); err != nil {
		rc.Close()
		return errors.Join(errors.New("resume without Range"), err)
	}
	b.rc = rc
	return nil
}

func (b *blobReader) Close() error {
	b.drop()
	if b.release != nil {
		b.release()
		b.release = nil
	}
	return nil
}
