package registry

import (
	"encoding/json"
	"errors"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
)

func TestParseReference(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		in                                string
		host, path, repo, name, full, ref string
	}{
		{"busybox", "registry-1.docker.io", "library/busybox", "busybox", "busybox:latest", "docker.io/library/busybox:latest", "latest"},
		{"docker.io/library/busybox:1.36", "registry-1.docker.io", "library/busybox", "busybox", "busybox:1.36", "docker.io/library/busybox:1.36", "1.36"},
		{"me/app", "registry-1.docker.io", "me/app", "me/app", "me/app:latest", "docker.io/me/app:latest", "latest"},
		{"localhost:5000/x", "localhost:5000", "x", "localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest", "latest"},
		{"127.0.0.1:5000/a/b:v1", "127.0.0.1:5000", "a/b", "127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1", "v1"},
		{"localhost:5000/x@" + d, "localhost:5000", "x", "localhost:5000/x", "", "localhost:5000/x@" + d, d},
	} {
		r, err := ParseReference(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if r.Host() != tc.host || r.Path() != tc.path || r.Repo() != tc.repo || r.Name() != tc.name || r.String() != tc.full || r.Ref() != tc.ref {
			t.Errorf("%s: host %q path %q repo %q name %q full %q ref %q", tc.in, r.Host(), r.Path(), r.Repo(), r.Name(), r.String(), r.Ref())
		}
	}
	for _, bad := range []string{"", "library/Upper", "a:b:c", "x@sha256:short", "-x"} {
		if _, err := ParseReference(bad); !errors.Is(err, layerstore.ErrInvalid) {
			t.Errorf("ParseReference(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	for in, want := range map[string]ocispec.Platform{
		"linux/amd64":    {OS: "linux", Architecture: "amd64"},
		"linux/arm64/v8": {OS: "linux", Architecture: "arm64"},
		"linux/arm/v7":   {OS: "linux", Architecture: "arm", Variant: "v7"},
		"Linux/x86_64":   {OS: "linux", Architecture: "amd64"},
	} {
		got, err := ParsePlatform(in)
		if err != nil || got.OS != want.OS || got.Architecture != want.Architecture || got.Variant != want.Variant {
			t.Errorf("ParsePlatform(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"linux", "/amd64", "a/b/c/d"} {
		if _, err := ParsePlatform(bad); !errors.Is(err, layerstore.ErrInvalid) {
			t.Errorf("ParsePlatform(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	arm := ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	if !matches(ocispec.Platform{OS: "linux", Architecture: "arm64"}, arm) || matches(ocispec.Platform{OS: "linux", Architecture: "amd64"}, arm) {
		t.Error("matches")
	}
}

func TestServerHost(t *testing.T) {
	for in, want := range map[string][2]string{
		"":                            {"registry-1.docker.io", DefaultServer},
		"docker.io":                   {"registry-1.docker.io", DefaultServer},
		"https://index.docker.io/v1/": {"registry-1.docker.io", DefaultServer},
		"localhost:5000":              {"localhost:5000", "localhost:5000"},
		"https://reg.example.com/v2/": {"reg.example.com", "reg.example.com"},
	} {
		h, k := ServerHost(in)
		if h != want[0] || k != want[1] {
			t.Errorf("ServerHost(%q) = %q, %q; want %q", in, h, k, want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for in, want := range map[string]bool{
		"localhost:5000": true, "127.0.0.1:5000": true, "127.1.2.3": true, "[::1]:5000": true,
		"10.0.0.1:5000": false, "registry.example.com": false, "localhost.example.com:5000": false,
	} {
		if got := isLoopback(in); got != want {
			t.Errorf("isLoopback(%q) = %v", in, got)
		}
	}
}

// FuzzParseReference: whatever a user types, ParseReference does not
// panic, and what it accepts prints as a reference it parses to the same.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:5000/x:v1", "a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "UPPER", "x:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			return
		}
		again, err := ParseReference(r.String())
		if err != nil || again.String() != r.String() {
			t.Errorf("%q -> %q -> %q, %v", s, r.String(), again.String(), err)
		}
	})
}

// FuzzPick: an index from a registry picks an entry or says why not.
func FuzzPick(f *testing.F) {
	f.Add([]byte(`{"manifests":[{"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Add([]byte(`{"manifests":[{"platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var idx ocispec.Index
		if json.Unmarshal(b, &idx) != nil {
			return
		}
		d, err := pick(idx, ocispec.Platform{OS: "linux", Architecture: "amd64"})
		if err == nil && d.Digest.Validate() != nil {
			t.Errorf("picked an entry with digest %q", d.Digest)
		}
	})
}
