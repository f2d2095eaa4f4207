package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/registrytest"
	"github.com/strata-dev/strata/internal/storetest"
)

// TestRegistry_TLSBasicAuth runs a registry with TLS (a CA the test makes)
// and htpasswd auth: without the CA the certificate is refused, without
// credentials docker's "unauthorized: authentication required"; login
// checks the password and keeps it in docker's config.json (0600), which
// push and pull then use; logout removes it.
func TestRegistry_TLSBasicAuth(t *testing.T) {
	dockerDir, strataDir := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{TLS: true, User: "alice", Password: "s3cret"})
	src := storetest.Root(t)
	loadDemo(t, src)
	name := reg.Addr + "/demo:v1"
	mustRun(t, src, "tag", "demo", name)

	r := runStrata(t, src, "", "push", name)
	if r.err == nil || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("push to a registry whose CA is unknown: %v\n%s", r.err, r.stderr)
	}
	reg.CA.InstallCA(t, filepath.Join(strataDir, "certs.d"), reg.Addr)

	r = runStrata(t, src, "", "push", name)
	if r.err == nil || !strings.Contains(r.stderr, "unauthorized: authentication required") {
		t.Fatalf("push without credentials: %v\n%s", r.err, r.stderr)
	}
	r = runStrata(t, src, "wrong\n", "login", "-u", "alice", "--password-stdin", reg.Addr)
	if r.err == nil || !strings.Contains(r.stderr, "incorrect username or password") {
		t.Fatalf("login with a wrong password: %v\n%s", r.err, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dockerDir, "config.json")); err == nil {
		t.Error("a failed login wrote config.json")
	}
	r = runStrata(t, src, "s3cret\n", "login", "-u", "alice", "--password-stdin", reg.Addr)
	if r.err != nil || r.stdout != "Login Succeeded\n" {
		t.Fatalf("login: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	cfgPath := filepath.Join(dockerDir, "config.json")
	fi, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode %v, want 0600", fi.Mode().Perm())
	}
	var cfg struct {
		Auths map[string]struct{ Auth string }
	}
	raw, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Auths[reg.Addr].Auth; got != base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) {
		t.Errorf("config.json auths[%s] = %q (%s)", reg.Addr, got, raw)
	}
	out := mustRun(t, src, "push", name)
	if !strings.Contains(out, "v1: digest: sha256:") {
		t.Errorf("push printed:\n%s", out)
	}
	dst := storetest.Root(t)
	mustRun(t, dst, "pull", name)
	if a, b := storeImageID(t, src, "demo"), storeImageID(t, dst, name); a != b {
		t.Errorf("pulled %s, pushed %s", b, a)
	}

	if got := mustRun(t, src, "logout", reg.Addr); got != "Removing login credentials for "+reg.Addr+"\n" {
		t.Errorf("logout printed %q", got)
	}
	if got := mustRun(t, src, "logout", reg.Addr); got != "Not logged in to "+reg.Addr+"\n" {
		t.Errorf("second logout printed %q", got)
	}
	r = runStrata(t, storetest.Root(t), "", "pull", name)
	if r.err == nil || !strings.Contains(r.stderr, "unauthorized: authentication required") {
		t.Errorf("pull after logout: %v\n%s", r.err, r.stderr)
	}

	// Credentials docker wrote (auths, base64) serve strata too, and an
	// insecure registry needs no CA.
	os.RemoveAll(filepath.Join(strataDir, "certs.d"))
	registrytest.WriteDockerAuth(t, dockerDir, reg.Addr, "alice", "s3cret")
	insecure := storetest.Root(t)
	mustRun(t, insecure, "pull", "--insecure-registry", reg.Addr, name)
	if err := os.WriteFile(filepath.Join(strataDir, "registries.json"), []byte(`{"insecure-registries": ["`+reg.Addr+`"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, insecure, "pull", name)
}

// TestRegistry_TokenAuth runs a registry with token auth (distribution's
// auth: token: with the test's CA as its root bundle) against a token
// server the test runs: login, push and pull go through bearer tokens.
func TestRegistry_TokenAuth(t *testing.T) {
	registryEnv(t)
	ts := registrytest.StartTokenServer(t, "bob", "tok3n")
	reg := registrytest.Start(t, registrytest.Options{Token: ts})
	src := storetest.Root(t)
	loadDemo(t, src)
	name := reg.Addr + "/team/demo:v1"
	mustRun(t, src, "tag", "demo", name)
	r := runStrata(t, src, "", "push", name)
	if r.err == nil || !strings.Contains(r.stderr, "unauthorized: authentication required") {
		t.Fatalf("push without a token: %v\n%s", r.err, r.stderr)
	}
	if r := runStrata(t, src, "nope\n", "login", "-u", "bob", "--password-stdin", reg.Addr); r.err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if r := runStrata(t, src, "tok3n\n", "login", "-u", "bob", "--password-stdin", reg.Addr); r.err != nil {
		t.Fatalf("login: %v\n%s", r.err, r.stderr)
	}
	mustRun(t, src, "push", name)
	dst := storetest.Root(t)
	mustRun(t, dst, "pull", name)
	if a, b := storeImageID(t, src, "demo"), storeImageID(t, dst, name); a != b {
		t.Errorf("pulled %s, pushed %s", b, a)
	}
	if ts.Issued.Load() == 0 {
		t.Error("the token server issued no token")
	}
}

// credHelper is a docker-credential-* helper for one server, keeping what
// docker's protocol hands it in a file: store (JSON on stdin), get (the
// server on stdin), erase.
const credHelper = `#!/bin/sh
f="$STRATA_TEST_CREDS"
case "$1" in
store) cat > "$f" ;;
get) read s; if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
erase) read s; rm -f "$f" ;;
list) echo "{}" ;;
esac
`

// TestRegistry_CredentialHelper: with credsStore in config.json, login
// hands the password to the docker-credential-* helper, not the file, and
// push and logout go through it.
func TestRegistry_CredentialHelper(t *testing.T) {
	dockerDir, strataDir := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{TLS: true, User: "carol", Password: "h3lper"})
	reg.CA.InstallCA(t, filepath.Join(strataDir, "certs.d"), reg.Addr)
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-stratatest"), []byte(credHelper), 0o755); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "creds.json")
	t.Setenv("STRATA_TEST_CREDS", creds)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if err := os.MkdirAll(dockerDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(`{"credsStore":"stratatest"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	src := storetest.Root(t)
	if r := runStrata(t, src, "h3lper\n", "login", "-u", "carol", "--password-stdin", reg.Addr); r.err != nil {
		t.Fatalf("login: %v\n%s", r.err, r.stderr)
	}
	if b, err := os.ReadFile(creds); err != nil || !strings.Contains(string(b), `"Secret":"h3lper"`) {
		t.Errorf("the helper holds %q (%v)", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dockerDir, "config.json")); strings.Contains(string(b), basicB64("carol", "h3lper")) {
		t.Errorf("config.json holds the password though a helper is configured: %s", b)
	}
	loadDemo(t, src)
	mustRun(t, src, "tag", "demo", reg.Addr+"/demo:v1")
	mustRun(t, src, "push", reg.Addr+"/demo:v1")
	mustRun(t, src, "logout", reg.Addr)
	if _, err := os.Stat(creds); err == nil {
		t.Error("logout left the helper's credentials")
	}
}

func basicB64(u, p string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":" + p)) }
