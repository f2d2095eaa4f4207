package layerstore

// References: the grammar of image names, and the refs bucket that maps
// "name:tag" to image IDs.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// The reference grammar of the distribution spec (distribution/reference),
// compiled at first use: at init every strata process paid for them.
var (
	pathComponentRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`) })
	domainRE        = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	})
	tagRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[\w][\w.-]{0,127}$`) })
)

const (
	defaultDomain = "docker.io"
	legacyDomain  = "index.docker.io"
	officialRepo  = "library/"
	defaultTag    = "latest"
	maxNameLength = 255
)

// NormalizeRef returns the reference s in the form strata stores and shows,
// "name:tag", following the distribution spec's grammar and docker's way of
// displaying names:
//
//   - the tag defaults to "latest" ("demo" -> "demo:latest");
//   - the name is an optional registry host[:port] (a first component with a
//     '.' or ':', or "localhost") and slash-separated path components, which
//     must be lowercase alphanumerics joined by '.', '_', "__" or dashes; an
//     uppercase path component is an error (as in docker), not folded;
//   - "docker.io/" and "index.docker.io/" are dropped, and so is "library/"
//     before a one-component name ("docker.io/library/demo:1" -> "demo:1");
//   - a digest reference keeps its digest and gets no default tag
//     ("docker.io/library/demo@sha256:…" -> "demo@sha256:…");
//   - a 64-hex-digit name is refused: it would read as an image ID.
//
// An unacceptable s yields an error wrapping ErrInvalid that quotes it.
// NormalizeRef(NormalizeRef(s)) == NormalizeRef(s).
func NormalizeRef(s string) (string, error) {
	bad := func(why string, args ...any) (string, error) {
		return "", fmt.Errorf("%w reference %q: %s", ErrInvalid, s, fmt.Sprintf(why, args...))
	}
	name, dgst := s, ""
	if i := strings.IndexByte(s, '@'); i >= 0 {
		name, dgst = s[:i], s[i+1:]
		d, err := digest.Parse(dgst)
		if err != nil {
			return "", fmt.Errorf("%w reference %q: digest %q: %w", ErrInvalid, s, dgst, err)
		}
		dgst = d.String()
	}
	tag := ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, tag = name[:i], name[i+1:]
		if !tagRE().MatchString(tag) {
			return bad("tag %q: must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'", tag)
		}
	}
	if name == "" {
		return bad("no repository name")
	}
	domain, remote := "", name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			domain, remote = first, name[i+1:]
			if !domainRE().MatchString(domain) {
				return bad("registry host %q is not a host[:port]", domain)
			}
		}
	}
	for _, c := range strings.Split(remote, "/") {
		if pathComponentRE().MatchString(c) {
			continue
		}
		if strings.ToLower(c) != c && pathComponentRE().MatchString(strings.ToLower(c)) {
			return bad("repository name must be lowercase")
		}
		return bad("name component %q: must be lowercase letters and digits, joined by '.', '_', '__' or dashes", c)
	}
	if len(name) > maxNameLength {
		return bad("name is longer than %d characters", maxNameLength)
	}
	if domain == defaultDomain || domain == legacyDomain {
		domain = ""
	}
	if domain == "" && strings.HasPrefix(remote, officialRepo) && !strings.Contains(remote[len(officialRepo):], "/") {
		remote = remote[len(officialRepo):]
	}
	if domain == "" && isHex64(remote) {
		return bad("a 64-hex-digit name would read as an image ID")
	}
	out := remote
	if domain != "" {
		out = domain + "/" + remote
	}
	if tag == "" && dgst == "" {
		tag = defaultTag
	}
	if tag != "" {
		out += ":" + tag
	}
	if dgst != "" {
		out += "@" + dgst
	}
	return out, nil
}

// SplitRef splits a normalized reference into its repository and tag:
// "demo:latest" -> ("demo", "latest"), "localhost:5000/app:v1" ->
// ("localhost:5000/app", "v1"). A digest, if any, is dropped
// ("demo@sha256:…" -> ("demo", "")). It does not validate.
func SplitRef(ref string) (repo, tag string) {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}

// ParseTag checks and normalizes s as a name to tag an image with, as
// NormalizeRef does ("demo" -> "demo:latest"), and refuses a digest
// reference ("demo@sha256:…"), which cannot name a tag. AddImage, NewImage,
// Tag and every command that names an image take their names through it.
func ParseTag(s string) (string, error) {
	n, err := NormalizeRef(s)
	if err != nil {
		return "", err
	}
	if strings.Contains(n, "@") {
		return "", fmt.Errorf("refusing to create a tag with a digest reference: %q: %w", s, ErrInvalid)
	}
	return n, nil
}

// parseTags is ParseTag of every name, in order.
func parseTags(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, s := range names {
		n, err := ParseTag(s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// allTags maps each image ID to the names that point at it.
func allTags(tx *bolt.Tx) map[digest.Digest][]string {
	tags := map[digest.Digest][]string{}
	bucket(tx, bucketRefs).ForEach(func(k, v []byte) error {
		tags[digest.Digest(v)] = append(tags[digest.Digest(v)], string(k))
		return nil
	})
	return tags
}

// tagsOf is the tags of image id, sorted: a range of the holders index.
func tagsOf(tx *bolt.Tx, id digest.Digest) []string {
	return namesOf(tx, id, 'r')
}

// setRef points tag name at image id, in refs and in the holders index.
func setRef(tx *bolt.Tx, name string, id digest.Digest) error {
	rb, hb := bucket(tx, bucketRefs), bucket(tx, bucketHolders)
	if old := rb.Get([]byte(name)); old != nil {
		if string(old) == string(id) {
			return nil
		}
		if err := hb.Delete(holderKey(holdName, digest.Digest(old), tagHolder(name))); err != nil {
			return err
		}
	}
	if err := hb.Put(holderKey(holdName, id, tagHolder(name)), []byte{}); err != nil {
		return err
	}
	return rb.Put([]byte(name), []byte(id))
}

// deleteRef deletes tag name, from refs and from the holders index.
func deleteRef(tx *bolt.Tx, name string) error {
	rb := bucket(tx, bucketRefs)
	old := rb.Get([]byte(name))
	if old == nil {
		return nil
	}
	if err := bucket(tx, bucketHolders).Delete(holderKey(holdName, digest.Digest(old), tagHolder(name))); err != nil {
		return err
	}
	return rb.Delete([]byte(name))
}

// NoSuchImageError is the error for a reference that names nothing; its
// message is docker's, with the reference normalized as docker prints it
// ("nope" -> "No such image: nope:latest").
type NoSuchImageError struct{ Ref string }

func (e *NoSuchImageError) Error() string {
	if n, err := NormalizeRef(e.Ref); err == nil {
		return "No such image: " + n
	}
	return "No such image: " + e.Ref
}
func (e *NoSuchImageError) Unwrap() error { return ErrNotFound }

// resolve finds the image ref names: a stored name as given or normalized,
// else an ID or unique ID prefix (see ResolveImage).
func resolve(tx *bolt.Tx, ref string) (digest.Digest, error) {
	if ref == "" {
		return "", &NoSuchImageError{Ref: ref}
	}
	rb := bucket(tx, bucketRefs)
	if v := rb.Get([]byte(ref)); v != nil {
		return digest.Digest(v), nil
	}
	if n, err := NormalizeRef(ref); err == nil {
		if v := rb.Get([]byte(n)); v != nil {
			return digest.Digest(v), nil
		}
	}
	if strings.Contains(ref, "@") {
		if id, ok := resolveRepoDigest(tx, ref); ok {
			return id, nil
		}
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if len(hex) < 4 || len(hex) > 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", &NoSuchImageError{Ref: ref}
	}
	prefix := []byte("sha256:" + hex)
	c := bucket(tx, bucketImages).Cursor()
	var found []digest.Digest
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		found = append(found, digest.Digest(k))
	}
	switch len(found) {
	case 0:
		return "", &NoSuchImageError{Ref: ref}
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("image ID prefix %q matches %d images: %w", ref, len(found), ErrAmbiguous)
}

// Tag points the reference target, checked and normalized by ParseTag, at
// the image src names (see ResolveImage). A tag target had is moved.
func (s *Store) Tag(src, target string) error {
	name, err := ParseTag(target)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		id, err := resolve(tx, src)
		if err != nil {
			return err
		}
		if old := bucket(tx, bucketRefs).Get([]byte(name)); old != nil && string(old) != string(id) {
			if holder := bucket(tx, bucketHolds).Get([]byte(name)); holder != nil {
				return fmt.Errorf("tag %s is held by %s: %w", name, holder, ErrInUse)
			}
		}
		if err := touchTagTime(tx, id, time.Now().UTC()); err != nil {
			return err
		}
		return setRef(tx, name, id)
	})
}

// touchTagTime records in image id's record when it was last tagged
// (docker's Metadata.LastTagTime).
func touchTagTime(tx *bolt.Tx, id digest.Digest, t time.Time) error {
	ib := bucket(tx, bucketImages)
	v := ib.Get([]byte(id))
	if v == nil {
		return fmt.Errorf("image %s: %w", id, ErrNotFound)
	}
	var rec imageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return fmt.Errorf("image %s: %w: %w", id, err, ErrCorrupt)
	}
	rec.LastTagTime = t
	nv, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return ib.Put([]byte(id), nv)
}

// isHex64 reports whether s is 64 lowercase hex digits (an image ID).
func isHex64[T string | []byte](s T) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
