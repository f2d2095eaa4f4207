package layerstore

import (
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// Holds mark tags that another program's data depends on (containerd's
// committed snapshots are images tagged containerd-snapshot:…): the image a
// held tag names is kept by Prune, even with all, and RemoveImage refuses
// it, forced or not, naming the holder; Tag does not move a held tag.
// Only Release drops a hold.
//
// A hold may be taken before its tag exists, so that a tag is held from
// the moment it is made (hold, then tag; untag, then release): a crash
// leaves at worst a hold on a tag that is not there, which Check reports
// as garbage and the holder's own recovery releases.

// Hold marks tag (checked and normalized by ParseTag) as held by holder.
func (s *Store) Hold(tag, holder string) error {
	name, err := ParseTag(tag)
	if err != nil {
		return err
	}
	if holder == "" {
		return fmt.Errorf("hold on %s: no holder named: %w", name, ErrInvalid)
	}
	return s.update(func(tx *bolt.Tx) error {
		return bucket(tx, bucketHolds).Put([]byte(name), []byte(holder))
	})
}

// Release drops the hold on tag; a tag not held is no error.
func (s *Store) Release(tag string) error {
	name, err := ParseTag(tag)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		return bucket(tx, bucketHolds).Delete([]byte(name))
	})
}

// Holds returns every held tag and its holder.
func (s *Store) Holds() (map[string]string, error) {
	holds := map[string]string{}
	err := s.view(func(tx *bolt.Tx) error {
		return bucket(tx, bucketHolds).ForEach(func(k, v []byte) error {
			holds[string(k)] = string(v)
			return nil
		})
	})
	return holds, err
}

// heldTag returns the first held tag among tags and its holder.
func heldTag(tx *bolt.Tx, tags []string) (tag, holder string) {
	sorted := append([]string(nil), tags...)
	sort.Strings(sorted)
	hb := bucket(tx, bucketHolds)
	for _, t := range sorted {
		if v := hb.Get([]byte(t)); v != nil {
			return t, string(v)
		}
	}
	return "", ""
}
