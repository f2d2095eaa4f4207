package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// uploadChunked uploads the blob in f (described by desc) in chunks of
// c.opts.ChunkSize: POST opens an upload session, each PATCH sends a
// chunk with its Content-Range, PUT closes it with the digest. A chunk that
// fails (a broken connection, a 5xx) is sent again from where the
// registry says the upload stands (GET of the session's Range), up to
// c.opts.Retries times in a row. oras-go uploads a blob in one request
// only; this is the distribution spec's chunked upload, the one piece of
// the protocol strata speaks itself.
func (c *Client) uploadChunked(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, f *os.File, sent func(int64)) error {
	ctx = auth.AppendRepositoryScope(ctx, repo.Reference, auth.ActionPull, auth.ActionPush)
	scheme := "https"
	if repo.PlainHTTP {
		scheme = "http"
	}
	base := &url.URL{Scheme: scheme, Host: repo.Reference.Host()}
	start := base.ResolveReference(&url.URL{Path: "/v2/" + repo.Reference.Repository + "/blobs/uploads/"})
	resp, err := c.do(ctx, repo, http.MethodPost, start.String(), nil, 0, nil)
	if err != nil {
		return err
	}
	loc, err := location(resp, start)
	if err != nil {
		return err
	}
	var off int64
	failures := 0
	for off < desc.Size {
		n := min(c.opts.ChunkSize, desc.Size-off)
		body := io.NewSectionReader(f, off, n)
		hdr := http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", off, off+n-1)},
		}
		resp, err := c.do(ctx, repo, http.MethodPatch, loc.String(), body, n, hdr)
		if err == nil {
			if loc, err = location(resp, loc); err != nil {
				return err
			}
			off += n
			sent(off)
			failures = 0
			continue
		}
		var er *errcode.ErrorResponse
		if ctx.Err() != nil || errors.As(err, &er) && er.StatusCode < 500 && er.StatusCode != http.StatusRequestedRangeNotSatisfiable || failures >= c.opts.Retries {
			return fmt.Errorf("upload of %s at byte %d of %d: %w", desc.Digest, off, desc.Size, err)
		}
		failures++
		// Where does the upload stand? The registry keeps what it got.
		st, serr := c.do(ctx, repo, http.MethodGet, loc.String(), nil, 0, nil)
		if serr != nil {
			continue
		}
		if l, err := location(st, loc); err == nil {
			loc = l
		}
		off = 0
		if r := st.Header.Get("Range"); r != "" {
			if _, end, ok := strings.Cut(strings.TrimPrefix(r, "bytes="), "-"); ok {
				// distribution says "0-0" for an empty upload too
				// (its end is size-1, floored at 0): take it as empty;
				// a chunk is never one byte.
				if e, err := strconv.ParseInt(end, 10, 64); err == nil && e > 0 {
					off = e + 1
				}
			}
		}
	}
	q := loc.Query()
	q.Set("digest", desc.Digest.String())
	loc.RawQuery = q.Encode()
	_, err = c.do(ctx, repo, http.MethodPut, loc.String(), nil, 0, nil)
	return err
}

// do sends one request of the upload through the repository's
// authenticating client and returns the response, its body drained; a
// status other than 2xx is an *errcode.ErrorResponse.
func (c *Client) do(ctx context.Context, repo *remote.Repository, method, u string, body *io.SectionReader, n int64, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Body = io.NopCloser(io.NewSectionReader(body, 0, n))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(body, 0, n)), nil }
		req.ContentLength = n
	}
	resp, err := repo.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		er := &errcode.ErrorResponse{Method: method, URL: req.URL, StatusCode: resp.StatusCode}
		return resp, er
	}
	io.Copy(io.Discard, resp.Body)
	return resp, nil
}

// location is the upload session's URL a response names, resolved
// against the request's.
func location(resp *http.Response, from *url.URL) (*url.URL, error) {
	l := resp.Header.Get("Location")
	if l == "" {
		return nil, fmt.Errorf("%s %s: no Location for the upload", resp.Request.Method, from.Redacted())
	}
	u, err := from.Parse(l)
	if err != nil {
		return nil, fmt.Errorf("upload Location %q: %w", l, err)
	}
	if u.Host != from.Host {
		return nil, fmt.Errorf("upload Location %q is on another host than %s", l, from.Host)
	}
	return u, nil
}
