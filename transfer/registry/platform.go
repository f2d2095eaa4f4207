package registry

import (
	"fmt"
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-dev/strata/layerstore"
)

// ParsePlatform parses docker's --platform value, OS/ARCH[/VARIANT]
// ("linux/arm64/v8"); "" is this machine's platform.
func ParsePlatform(s string) (ocispec.Platform, error) {
	if s == "" {
		return DefaultPlatform(), nil
	}
	parts := strings.Split(strings.ToLower(s), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return ocispec.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]: %w", s, layerstore.ErrInvalid)
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return normalize(p), nil
}

// DefaultPlatform is the platform this program runs on.
func DefaultPlatform() ocispec.Platform {
	p := ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = "v7"
	}
	return p
}

// normalize folds the spellings registries use for one platform, as
// containerd's platforms package does for the common ones.
func normalize(p ocispec.Platform) ocispec.Platform {
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	}
	if p.Architecture == "arm64" && p.Variant == "v8" {
		p.Variant = ""
	}
	return p
}

// matches says whether a manifest for have runs where want was asked for:
// same OS and architecture, and the variant asked for if any.
func matches(want, have ocispec.Platform) bool {
	want, have = normalize(want), normalize(have)
	return want.OS == have.OS && want.Architecture == have.Architecture && (want.Variant == "" || want.Variant == have.Variant)
}

func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
