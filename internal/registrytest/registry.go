package registrytest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/strata-dev/strata/internal/syncbuf"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Options choose a registry's setup. The zero value is a plain HTTP
// registry without auth.
type Options struct {
	// User and Password turn on htpasswd basic auth (made with htpasswd -B).
	User, Password string
	// TLS serves HTTPS with a certificate for 127.0.0.1 from CA (made if
	// nil).
	TLS bool
	CA  *CA
	// Token turns on token auth against this token server.
	Token *TokenServer
	// Addr is the address to serve on; "" picks a free port.
	Addr string
	// Storage is the storage directory; "" is a new temporary one.
	Storage string
}

// Registry is a running docker-registry.
type Registry struct {
	Addr    string // 127.0.0.1:PORT
	Storage string
	CA      *CA // when TLS
	opt     Options
	bin     string
	config  string
	cmd     *exec.Cmd
	done    chan struct{}
	log     syncbuf.Buffer
}

// Start runs docker-registry with opt and waits until it answers. It is
// stopped when the test ends. A machine without docker-registry skips the
// test.
func Start(t testing.TB, opt Options) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("docker-registry (Debian's docker-registry package) is not installed")
	}
	if opt.Addr != "" {
		return start(t, bin, opt)
	}
	// A port free a moment ago may be taken by another test process
	// before the registry binds it: try another.
	for attempt := 0; ; attempt++ {
		o := opt
		o.Addr = FreeAddr(t)
		r, err := tryStart(t, bin, o)
		if err == nil {
			return r
		}
		if !errors.Is(err, errAddrInUse) || attempt == 4 {
			t.Fatal(err)
		}
	}
}

// errAddrInUse is a registry that could not bind its address.
var errAddrInUse = errors.New("address already in use")

func start(t testing.TB, bin string, opt Options) *Registry {
	t.Helper()
	r, err := tryStart(t, bin, opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tryStart(t testing.TB, bin string, opt Options) (*Registry, error) {
	t.Helper()
	dir := t.TempDir()
	if opt.Storage == "" {
		opt.Storage = filepath.Join(dir, "storage")
	}
	r := &Registry{Addr: opt.Addr, Storage: opt.Storage, opt: opt, bin: bin, config: filepath.Join(dir, "config.yml")}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: %s\n", opt.Storage, opt.Addr)
	if opt.TLS {
		if opt.CA == nil {
			opt.CA = NewCA(t)
		}
		r.CA = opt.CA
		certFile, keyFile := opt.CA.Issue(t, dir)
		fmt.Fprintf(&cfg, "  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
	switch {
	case opt.Token != nil:
		bundle := filepath.Join(dir, "token-ca.pem")
		writeFile(t, bundle, opt.Token.CA.CertPEM)
		fmt.Fprintf(&cfg, "auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n", opt.Token.Realm(), opt.Token.Service, opt.Token.Issuer, bundle)
	case opt.User != "":
		pw, err := exec.Command("htpasswd", "-Bbn", opt.User, opt.Password).Output()
		if err != nil {
			t.Fatalf("htpasswd (apache2-utils): %v", err)
		}
		file := filepath.Join(dir, "htpasswd")
		writeFile(t, file, pw)
		fmt.Fprintf(&cfg, "auth:\n  htpasswd:\n    realm: strata-test\n    path: %s\n", file)
	}
	writeFile(t, r.config, []byte(cfg.String()))
	if err := r.start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { r.Kill() })
	return r, nil
}

func (r *Registry) start() error {
	cmd := exec.Command(r.bin, "serve", r.config)
	cmd.Stdout = &r.log
	cmd.Stderr = &r.log
	// No Pdeathsig: it fires when the forking thread ends, which in Go
	// is any time; t.Cleanup kills the registry.
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("docker-registry: %w", err)
	}
	r.cmd = cmd
	r.done = make(chan struct{})
	go func() { cmd.Wait(); close(r.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hc := r.httpClient()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/v2/", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-r.done:
			if strings.Contains(r.Log(), "address already in use") {
				return fmt.Errorf("docker-registry on %s: %w", r.Addr, errAddrInUse)
			}
			return fmt.Errorf("docker-registry exited:\n%s", r.Log())
		case <-ctx.Done():
			r.Kill()
			return fmt.Errorf("docker-registry on %s did not answer: %v\n%s", r.Addr, err, r.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL is the registry's base URL.
func (r *Registry) URL() string {
	if r.opt.TLS {
		return "https://" + r.Addr
	}
	return "http://" + r.Addr
}

// httpClient trusts the registry's CA.
func (r *Registry) httpClient() *http.Client {
	if !r.opt.TLS {
		return http.DefaultClient
	}
	pool := x509.NewCertPool()
	pool.AddCert(r.CA.Cert)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// Kill stops the registry with SIGKILL, as a crash would.
func (r *Registry) Kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		<-r.done
	}
}

// Restart starts the registry again on the same address and storage. If
// another process took the address meanwhile, it fails the test.
func (r *Registry) Restart(t testing.TB) {
	t.Helper()
	r.Kill()
	r.log.Reset()
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = r.start(); !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Error(err)
	}
}

// Log is what the registry printed so far.
func (r *Registry) Log() string {
	return r.log.String()
}

// WriteDockerAuth writes dir/config.json as docker login would, with
// user:password for hostport in "auths", mode 0600.
func WriteDockerAuth(t testing.TB, dir, hostport, user, password string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	auth := basicAuth(user, password)
	writeFile(t, filepath.Join(dir, "config.json"), []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, hostport, auth)))
}
