package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/strata-dev/strata/layerstore"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// Options tune a Client. The zero value uses docker's and strata's default
// places and no insecure registry.
type Options struct {
	// ConfigDir is strata's configuration directory, for certs.d and
	// registries.json; "" is DefaultConfigDir().
	ConfigDir string
	// DockerConfigDir holds docker's config.json with the credentials; ""
	// is $DOCKER_CONFIG, else ~/.docker.
	DockerConfigDir string
	// CertsDirs are searched for HOST:PORT/*.crt; nil is
	// /etc/docker/certs.d and ConfigDir/certs.d.
	CertsDirs []string
	// Insecure names registries ("host:port", "host") allowed plain HTTP
	// and unverified TLS, besides registries.json's.
	Insecure []string
	// Concurrency bounds the layers moved at once; 0 is 3, as docker's
	// max-concurrent-downloads.
	Concurrency int
	// ChunkSize is the size of the chunks a blob larger than it uploads
	// in (each resent from where the registry stands if it fails); 0 is
	// 16 MiB.
	ChunkSize int64
	// Retries is how often an interrupted blob download resumes (HTTP
	// Range) before the pull fails; 0 is 5.
	Retries int
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

// DefaultConfigDir is $STRATA_CONFIG, else /etc/strata for root, else
// $XDG_CONFIG_HOME/strata (~/.config/strata).
func DefaultConfigDir() string {
	if d := os.Getenv("STRATA_CONFIG"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/etc/strata"
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "strata")
	}
	return "/etc/strata"
}

// fileConfig is CONFIG/registries.json.
type fileConfig struct {
	Insecure []string `json:"insecure-registries"`
}

// Client talks to registries. It is safe for concurrent use.
type Client struct {
	opts  Options
	creds credentials.Store
	cache auth.Cache
	log   *slog.Logger

	stats Stats

	mu    sync.Mutex
	hosts map[string]*host
}

// host is what the client learnt of one registry.
type host struct {
	client *auth.Client
	plain  bool // speaks HTTP, not HTTPS
}

// New makes a client: it reads CONFIG/registries.json (absent is fine) and
// opens docker's credential store.
func New(opt Options) (*Client, error) {
	if opt.ConfigDir == "" {
		opt.ConfigDir = DefaultConfigDir()
	}
	if opt.CertsDirs == nil {
		opt.CertsDirs = []string{"/etc/docker/certs.d", filepath.Join(opt.ConfigDir, "certs.d")}
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = 3
	}
	if opt.ChunkSize <= 0 {
		opt.ChunkSize = 16 << 20
	}
	if opt.Retries <= 0 {
		opt.Retries = 5
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	path := filepath.Join(opt.ConfigDir, "registries.json")
	if raw, err := os.ReadFile(path); err == nil {
		var fc fileConfig
		if err := json.Unmarshal(raw, &fc); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", path, err, layerstore.ErrInvalid)
		}
		opt.Insecure = append(opt.Insecure, fc.Insecure...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	dc := opt.DockerConfigDir
	if dc == "" {
		dc = os.Getenv("DOCKER_CONFIG")
	}
	if dc == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("docker config: %w", err)
		}
		dc = filepath.Join(home, ".docker")
	}
	creds, err := credentials.NewStore(filepath.Join(dc, "config.json"), credentials.StoreOptions{AllowPlaintextPut: true, DetectDefaultNativeStore: true})
	if err != nil {
		return nil, fmt.Errorf("docker config %s: %w", dc, err)
	}
	return &Client{opts: opt, creds: creds, cache: auth.NewCache(), log: opt.Logger, hosts: map[string]*host{}}, nil
}

// DockerConfigPath is the config.json credentials are kept in.
func (c *Client) DockerConfigPath() string {
	if ds, ok := c.creds.(*credentials.DynamicStore); ok {
		return ds.ConfigPath()
	}
	return ""
}

// insecure says whether hostport was named insecure.
func (c *Client) insecure(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	return slices.Contains(c.opts.Insecure, hostport) || slices.Contains(c.opts.Insecure, h)
}

// isLoopback says whether hostport names this machine.
func isLoopback(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && a.IsLoopback()
}

// tlsConfig is the TLS setup for hostport: the system roots plus the
// certs.d CAs, the certs.d client certificate, or no verification for an
// insecure registry.
func (c *Client) tlsConfig(hostport string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.insecure(hostport) {
		cfg.InsecureSkipVerify = true
		return cfg, nil
	}
	var pool *x509.CertPool
	for _, dir := range c.opts.CertsDirs {
		d := filepath.Join(dir, hostport)
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			switch {
			case strings.HasSuffix(e.Name(), ".crt"):
				if pool == nil {
					if pool, err = x509.SystemCertPool(); err != nil {
						pool = x509.NewCertPool()
					}
				}
				pem, err := os.ReadFile(p)
				if err != nil {
					return nil, err
				}
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("%s: no PEM certificate: %w", p, layerstore.ErrInvalid)
				}
			case strings.HasSuffix(e.Name(), ".cert"):
				key := strings.TrimSuffix(p, ".cert") + ".key"
				pair, err := tls.LoadX509KeyPair(p, key)
				if err != nil {
					return nil, fmt.Errorf("client certificate %s: %w", p, err)
				}
				cfg.Certificates = append(cfg.Certificates, pair)
			}
		}
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// host returns the client for hostport, finding out on first use whether it
// speaks HTTPS or (loopback or insecure only) plain HTTP.
func (c *Client) host(ctx context.Context, hostport string) (*host, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.hosts[hostport]; ok {
		return h, nil
	}
	tc, err := c.tlsConfig(hostport)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 16
	hc := &http.Client{Transport: tr}
	h := &host{client: &auth.Client{
		Client:     hc,
		Header:     http.Header{"User-Agent": {"strata"}},
		Credential: credentials.Credential(c.creds),
		Cache:      c.cache,
	}}
	if isLoopback(hostport) {
		// A registry on this machine may hand out tokens from this machine.
		h.client.BlockedRealmPrefixes = []netip.Prefix{}
	}
	if isLoopback(hostport) || c.insecure(hostport) {
		h.plain, err = speaksHTTP(ctx, hc, hostport)
		if err != nil {
			return nil, err
		}
	}
	c.hosts[hostport] = h
	return h, nil
}

// speaksHTTP tries HTTPS on hostport and says whether the server answered
// in plain HTTP instead. Any other failure is left for the real request.
func speaksHTTP(ctx context.Context, hc *http.Client, hostport string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+hostport+"/v2/", nil)
	if err != nil {
		return false, fmt.Errorf("registry %s: %w: %w", hostport, err, layerstore.ErrInvalid)
	}
	resp, err := hc.Do(req)
	if err == nil {
		resp.Body.Close()
		return false, nil
	}
	return errors.Is(err, http.ErrSchemeMismatch) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"), nil
}

// repository is ref's repository, ready to call.
func (c *Client) repository(ctx context.Context, ref Reference) (*remote.Repository, error) {
	h, err := c.host(ctx, ref.Host())
	if err != nil {
		return nil, err
	}
	repo, err := remote.NewRepository(ref.Host() + "/" + ref.Path())
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", ref.Familiar(), err, layerstore.ErrInvalid)
	}
	repo.Client = h.client
	repo.PlainHTTP = h.plain
	repo.MaxMetadataBytes = maxManifestBytes
	return repo, nil
}

// registry is the registry ref lives in, for Login.
func (c *Client) registry(ctx context.Context, hostport string) (*remote.Registry, error) {
	h, err := c.host(ctx, hostport)
	if err != nil {
		return nil, err
	}
	reg, err := remote.NewRegistry(hostport)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %w: %w", hostport, err, layerstore.ErrInvalid)
	}
	reg.Client = h.client
	reg.PlainHTTP = h.plain
	return reg, nil
}
