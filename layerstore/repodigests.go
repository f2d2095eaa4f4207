package layerstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Repo digests: the "name@sha256:…" references a registry knows an image by
// (the digest of the manifest it pulled or pushed). As in docker, only a
// pull or a push records them; an image loaded from an archive has none.

// ParseRepoDigest checks and normalizes s as a repo digest ("name@sha256:…"),
// the name as NormalizeRef shows it.
func ParseRepoDigest(s string) (string, error) {
	n, err := NormalizeRef(s)
	if err != nil {
		return "", err
	}
	repo, d, ok := strings.Cut(n, "@")
	if !ok || strings.Contains(repo, "@") {
		return "", fmt.Errorf("repo digest %q: want name@sha256:…: %w", s, ErrInvalid)
	}
	if err := digest.Digest(d).Validate(); err != nil {
		return "", fmt.Errorf("repo digest %q: %w: %w", s, err, ErrInvalid)
	}
	return n, nil
}

func parseRepoDigests(in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		n, err := ParseRepoDigest(s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// AddRepoDigest records that the registry knows the image ref names (see
// ResolveImage) as repoDigest, after a push.
func (s *Store) AddRepoDigest(ref, repoDigest string) error {
	n, err := ParseRepoDigest(repoDigest)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		id, err := resolve(tx, ref)
		if err != nil {
			return err
		}
		return addRepoDigests(tx, id, []string{n})
	})
}

// addRepoDigests merges repo digests (normalized) into image id's record.
// A repository keeps each digest once.
func addRepoDigests(tx *bolt.Tx, id digest.Digest, rds []string) error {
	if len(rds) == 0 {
		return nil
	}
	ib := bucket(tx, bucketImages)
	v := ib.Get([]byte(id))
	if v == nil {
		return fmt.Errorf("image %s: %w", id, ErrNotFound)
	}
	var rec imageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return fmt.Errorf("image %s: %w: %w", id, err, ErrCorrupt)
	}
	changed := false
	for _, rd := range rds {
		if !slices.Contains(rec.RepoDigests, rd) {
			rec.RepoDigests = append(rec.RepoDigests, rd)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	slices.Sort(rec.RepoDigests)
	nv, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return ib.Put([]byte(id), nv)
}

// resolveRepoDigest finds the image a "name@sha256:…" reference names among
// the recorded repo digests.
func resolveRepoDigest(tx *bolt.Tx, ref string) (digest.Digest, bool) {
	n, err := ParseRepoDigest(ref)
	if err != nil {
		return "", false
	}
	var found digest.Digest
	_ = bucket(tx, bucketImages).ForEach(func(k, v []byte) error {
		var rec imageRecord
		if json.Unmarshal(v, &rec) == nil && slices.Contains(rec.RepoDigests, n) {
			found = digest.Digest(k)
		}
		return nil
	})
	return found, found != ""
}
