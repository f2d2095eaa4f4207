package registrytest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Proxy is a plain HTTP proxy in front of a registry that sees every
// request: it counts blob bytes, and on request corrupts a blob, cuts a
// blob's response after some bytes, serves another manifest body, or
// answers manifests with a redirect to themselves.
type Proxy struct {
	Addr string // 127.0.0.1:PORT, the registry's address for clients

	// BlobBytes counts the blob bytes sent to clients (GET
	// /v2/…/blobs/…); BlobUploadBytes those received (PATCH/PUT uploads).
	BlobBytes       atomic.Int64
	BlobUploadBytes atomic.Int64
	// RangeRequests counts blob GETs with a Range header.
	RangeRequests atomic.Int64

	mu           sync.Mutex
	corrupt      map[digest.Digest]bool
	swapped      map[digest.Digest]digest.Digest
	cutAfter     int64 // cut the next blob response after this many bytes; 0 is never
	onBlob       func(total int64)
	manifestBody []byte
	redirectLoop bool
	requests     []string
	broken       atomic.Bool
	failPatch    int // fail the failPatch-th PATCH from now with a 502; 0 is never
}

// FailPatch makes the n-th blob upload PATCH from now fail with 502 Bad
// Gateway, without reaching the registry.
func (p *Proxy) FailPatch(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failPatch = n
}

// Break makes every blob response in flight fail from now on, as the
// registry's death breaks its connections (bytes already in the proxy's
// socket buffers would otherwise still arrive).
func (p *Proxy) Break(on bool) { p.broken.Store(on) }

// StartProxy serves a proxy to target (the registry's base URL) until the
// test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{corrupt: map[digest.Digest]bool{}, swapped: map[digest.Digest]digest.Digest{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = p.modify
	rp.ErrorLog = nil
	l := Listen(t)
	p.Addr = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests = append(p.requests, r.Method+" "+r.URL.Path)
		loop := p.redirectLoop && strings.Contains(r.URL.Path, "/manifests/")
		fail := false
		if r.Method == http.MethodPatch && p.failPatch > 0 {
			p.failPatch--
			fail = p.failPatch == 0
		}
		p.mu.Unlock()
		if fail {
			io.Copy(io.Discard, r.Body)
			http.Error(w, "registrytest: failed on purpose", http.StatusBadGateway)
			return
		}
		if loop {
			http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
			return
		}
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
			p.mu.Lock()
			asked := r.URL.Path[i+len("/blobs/"):]
			if other, ok := p.swapped[digest.Digest(asked)]; ok {
				r.URL.Path = r.URL.Path[:i] + "/blobs/" + string(other)
				r.Header.Set(swappedHeader, asked)
			}
			p.mu.Unlock()
		}
		if r.Body != nil && (r.Method == http.MethodPatch || r.Method == http.MethodPut) && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			r.Body = &countBody{ReadCloser: r.Body, n: &p.BlobUploadBytes}
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

// Corrupt makes the proxy flip a byte in blob d whenever it is served.
func (p *Proxy) Corrupt(d digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.corrupt[d] = true
}

// Swap makes the proxy serve blob other's content when blob d is asked
// for, without a Content-Length: a registry serving the wrong content.
func (p *Proxy) Swap(d, other digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.swapped[d] = other
}

// CutNextBlobAfter makes the next blob response stop (the connection
// broken) after n bytes.
func (p *Proxy) CutNextBlobAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutAfter = n
}

// OnBlobBytes calls fn with the running total of blob bytes served.
func (p *Proxy) OnBlobBytes(fn func(total int64)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onBlob = fn
}

// ServeManifest makes every manifest GET answer body instead, with a
// Docker-Content-Digest that matches it.
func (p *Proxy) ServeManifest(body []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.manifestBody = body
}

// RedirectLoop makes every manifest request redirect to itself.
func (p *Proxy) RedirectLoop(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirectLoop = on
}

// Requests lists "METHOD PATH" of what the proxy saw.
func (p *Proxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

func (p *Proxy) modify(resp *http.Response) error {
	path := resp.Request.URL.Path
	p.mu.Lock()
	defer p.mu.Unlock()
	if strings.Contains(path, "/manifests/") && p.manifestBody != nil && resp.Request.Method == http.MethodGet {
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(p.manifestBody))
		resp.ContentLength = int64(len(p.manifestBody))
		resp.Header.Set("Content-Length", strconv.Itoa(len(p.manifestBody)))
		resp.Header.Set("Docker-Content-Digest", digest.FromBytes(p.manifestBody).String())
		return nil
	}
	i := strings.Index(path, "/blobs/sha256:")
	if i < 0 || resp.Request.Method != http.MethodGet {
		return nil
	}
	if resp.Request.Header.Get("Range") != "" {
		p.RangeRequests.Add(1)
	}
	d := digest.Digest(path[i+len("/blobs/"):])
	if resp.Request.Header.Get(swappedHeader) != "" {
		// A registry that lies: the digest asked for, other content.
		resp.Header.Set("Docker-Content-Digest", resp.Request.Header.Get(swappedHeader))
		// Unsized, so that the client reads it all and the digest check
		// is what catches it.
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
	}
	b := &blobBody{ReadCloser: resp.Body, p: p, corrupt: p.corrupt[d], cut: p.cutAfter, onBlob: p.onBlob}
	resp.Body = b
	return nil
}

// swappedHeader marks a request whose blob the proxy swapped.
const swappedHeader = "X-Strata-Test-Swapped"

// errCut breaks a response on purpose.
var errCut = errors.New("registrytest: connection cut")

type blobBody struct {
	io.ReadCloser
	p       *Proxy
	n       int64
	corrupt bool
	cut     int64
	onBlob  func(int64)
}

func (b *blobBody) Read(q []byte) (int, error) {
	if b.p.broken.Load() {
		return 0, errCut
	}
	if b.cut > 0 && b.n >= b.cut {
		b.p.mu.Lock()
		b.p.cutAfter = 0 // once
		b.p.mu.Unlock()
		return 0, errCut
	}
	if b.cut > 0 && int64(len(q)) > b.cut-b.n {
		q = q[:b.cut-b.n]
	}
	n, err := b.ReadCloser.Read(q)
	if b.corrupt && b.n == 0 && n > 0 {
		q[n/2] ^= 0xff
	}
	b.n += int64(n)
	total := b.p.BlobBytes.Add(int64(n))
	if b.onBlob != nil {
		b.onBlob(total)
	}
	return n, err
}

type countBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countBody) Read(q []byte) (int, error) {
	n, err := c.ReadCloser.Read(q)
	c.n.Add(int64(n))
	return n, err
}
