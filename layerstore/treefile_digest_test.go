package layerstore

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// isSHA256, what a tree file's records are checked with, accepts what
// digest.Parse accepts as a sha256 digest, and nothing else: a record's
// digest names a path under objects/. (The check it replaced panicked on a
// digest without a ':'.)
func TestIsSHA256_AsDigestValidate(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, s := range []string{
		"sha256:" + hex,
		"sha256:" + strings.ToUpper(hex),
		"sha256:" + hex[:63],
		"sha256:" + hex + "0",
		"sha256:" + hex[:63] + "g",
		"sha256:" + hex[:62] + "/.",
		"sha512:" + hex,
		"SHA256:" + hex,
		"sha256" + hex + "0",
		"sha256:../../../../../../../../../../../../../../../../../../etc/passwd",
		"",
	} {
		d, err := digest.Parse(s) // Algorithm of a digest without ':' panics
		want := err == nil && d.Algorithm() == digest.SHA256
		if got := isSHA256([]byte(s)); got != want {
			t.Errorf("isSHA256(%q) = %v, digest.Validate says %v", s, got, want)
		}
	}
}
