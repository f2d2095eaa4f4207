package registry

import (
	"fmt"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/layerstore"
)

// Reference is an image in a registry, named as docker names it: "busybox"
// is docker.io/library/busybox:latest, "localhost:5000/x" is x on the
// registry at localhost:5000.
type Reference struct {
	named  reference.Named
	Tag    string        // "" when pulled by digest alone
	Digest digest.Digest // "" when named by tag
}

// ParseReference parses s as docker does, defaulting the tag to latest
// unless s names a digest. A name docker refuses yields an error wrapping
// layerstore.ErrInvalid.
func ParseReference(s string) (Reference, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Reference{}, fmt.Errorf("invalid reference format %q: %w: %w", s, err, layerstore.ErrInvalid)
	}
	r := Reference{named: reference.TrimNamed(named)}
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest()
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// Domain is the registry as docker names it ("docker.io", "localhost:5000").
func (r Reference) Domain() string { return reference.Domain(r.named) }

// Host is the registry's address for the API: docker.io's is
// registry-1.docker.io.
func (r Reference) Host() string {
	if d := r.Domain(); d != "docker.io" {
		return d
	}
	return "registry-1.docker.io"
}

// Path is the repository inside its registry ("library/busybox").
func (r Reference) Path() string { return reference.Path(r.named) }

// Repo is the repository as docker shows it ("busybox",
// "localhost:5000/x").
func (r Reference) Repo() string { return reference.FamiliarName(r.named) }

// FullRepo is the repository with its registry ("docker.io/library/busybox").
func (r Reference) FullRepo() string { return r.named.Name() }

// Name is the local name to tag a pulled image with ("busybox:latest"), or
// "" for a reference by digest alone.
func (r Reference) Name() string {
	if r.Tag == "" {
		return ""
	}
	return r.Repo() + ":" + r.Tag
}

// Ref is what a registry API call names: the digest if there is one, else
// the tag.
func (r Reference) Ref() string {
	if r.Digest != "" {
		return string(r.Digest)
	}
	return r.Tag
}

// String is the full reference as docker pull prints it last
// ("docker.io/library/busybox:latest").
func (r Reference) String() string {
	s := r.FullRepo()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + string(r.Digest)
	}
	return s
}

// Familiar is the reference as docker shows it in messages
// ("busybox:latest", "localhost:5000/x@sha256:…").
func (r Reference) Familiar() string {
	s := r.Repo()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + string(r.Digest)
	}
	return s
}

// RepoDigest is the repo digest a store records for manifest d of this
// repository ("localhost:5000/x@sha256:…").
func (r Reference) RepoDigest(d digest.Digest) string { return r.Repo() + "@" + string(d) }

// WithTag is r with tag t and no digest.
func (r Reference) WithTag(t string) Reference { return Reference{named: r.named, Tag: t} }
