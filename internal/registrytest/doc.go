// Package registrytest starts real servers for the registry tests: Debian's
// docker-registry (distribution 2.8) on 127.0.0.1 with a configuration the
// test writes (filesystem storage in a temporary directory, deletes
// enabled; optionally htpasswd basic auth, TLS with a CA the test makes, or
// token auth against a tiny token server the test runs), and an HTTP proxy in
// front of one that counts, corrupts or cuts what passes (dockerd is
// internal/dockertest's). Everything stops in t.Cleanup. It writes only under
// t.TempDir().
package registrytest
