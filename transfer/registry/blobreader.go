package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// blobReader reads one blob from byte off (0, or where an earlier pull's
// download stopped) and, when the connection breaks (the registry
// restarted, a proxy cut it), asks again from where it stopped with an HTTP
// Range request, up to retries times. It verifies nothing: the store hashes
// every byte it is given against the blob's digest.
type blobReader struct {
	ctx     context.Context
	repo    *remote.Repository
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

// reopen fetches the blob from b.off.
func (b *blobReader) reopen() error {
	rc, err := fetchFrom(b.ctx, b.repo, b.desc, b.off)
	if err != nil {
		return err
	}
	b.rc = rc
	return nil
}

// fetchFrom GETs blob desc from byte off: with a Range request when off is
// not 0 (one request; oras's seeker would first start a GET of the whole
// blob), and where the registry ignores Range, by reading off bytes and
// dropping them.
func fetchFrom(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, off int64) (io.ReadCloser, error) {
	if off == 0 {
		return repo.Blobs().Fetch(ctx, desc)
	}
	ref := repo.Reference
	ref.Reference = desc.Digest.String()
	ctx = auth.AppendRepositoryScope(ctx, ref, auth.ActionPull)
	scheme := "https"
	if repo.PlainHTTP {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/%s/blobs/%s", scheme, ref.Host(), ref.Repository, desc.Digest), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	client := repo.Client
	if client == nil {
		client = auth.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		// Content-Range: bytes START-END/SIZE
		cr := resp.Header.Get("Content-Range")
		start, _, _ := strings.Cut(strings.TrimPrefix(cr, "bytes "), "-")
		if n, err := strconv.ParseInt(start, 10, 64); err != nil || n != off {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s from byte %d: the registry answered with Content-Range %q", req.URL, off, cr)
		}
		return resp.Body, nil
	case http.StatusOK:
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
			resp.Body.Close()
			return nil, errors.Join(errors.New("resume without Range"), err)
		}
		return resp.Body, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %w", desc.Digest, errdef.ErrNotFound)
	}
	defer resp.Body.Close()
	er := &errcode.ErrorResponse{Method: req.Method, URL: req.URL, StatusCode: resp.StatusCode}
	var body struct{ Errors errcode.Errors }
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) == nil {
		er.Errors = body.Errors
	}
	return nil, er
}

func (b *blobReader) Close() error {
	b.drop()
	if b.release != nil {
		b.release()
		b.release = nil
	}
	return nil
}
