package layerstore

import (
	"fmt"
	"sort"

	"github.com/opencontainers/go-digest"
)

// ImageUser is something kept outside the store's metadata that uses an
// image by its ID: a container, whose record names its image from the
// moment it is made, before any lease of its top layer exists (and after a
// kill that left none). Options.Users lists them.
type ImageUser struct {
	Image digest.Digest
	// Kind names what uses it, in docker's words ("container"), and ID
	// which one (its full ID; messages show 12 characters).
	Kind, ID string
	// Running: a running user cannot be forced off its image.
	Running bool
}

// Use runs fn under the store's shared lock: RemoveImage and Prune, which
// read Options.Users under the exclusive lock, wait until fn returns. A
// caller that resolves an image and then records its use where Users reads
// it does both in fn, so that no removal falls between the two.
func (s *Store) Use(fn func() error) error {
	lk, err := s.lock(false)
	if err != nil {
		return err
	}
	defer lk.unlock()
	return fn()
}

// imageUsers reads Options.Users by image, each image's users sorted by ID
// (the running ones first), so that a message names the same one each time.
// Called under the exclusive lock.
func (s *Store) imageUsers() (map[digest.Digest][]ImageUser, error) {
	if s.opts.Users == nil {
		return nil, nil
	}
	us, err := s.opts.Users()
	if err != nil {
		return nil, fmt.Errorf("read the images' users: %w", err)
	}
	by := map[digest.Digest][]ImageUser{}
	for _, u := range us {
		by[u.Image] = append(by[u.Image], u)
	}
	for _, l := range by {
		sort.Slice(l, func(i, j int) bool {
			if l[i].Running != l[j].Running {
				return l[i].Running
			}
			return l[i].ID < l[j].ID
		})
	}
	return by, nil
}

func (u ImageUser) short() string {
	if len(u.ID) > 12 {
		return u.ID[:12]
	}
	return u.ID
}
