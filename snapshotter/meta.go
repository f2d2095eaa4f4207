package snapshotter

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/strata-dev/strata/layerstore"
)

// Kind is a snapshot's kind, numbered as containerd's API numbers it.
type Kind int

const (
	KindView      Kind = 1
	KindActive    Kind = 2
	KindCommitted Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindView:
		return "view"
	case KindActive:
		return "active"
	case KindCommitted:
		return "committed"
	}
	return "unknown"
}

// Info is what Stat, Update and Walk give back.
type Info struct {
	Name    string            `json:"-"`
	Parent  string            `json:"parent,omitempty"`
	Kind    Kind              `json:"kind"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
}

// record is the value of snapshots/<name>.
type record struct {
	Info
	// Image holds a committed snapshot's chain; for an active snapshot or a
	// view, the parent's image (the empty image without a parent).
	Image digest.Digest `json:"image"`
	// Mount is the session mount ID of an active snapshot or a view.
	Mount string `json:"mount,omitempty"`
}

var (
	bucketRoot      = []byte("v1")
	bucketSnapshots = []byte("snapshots")
)

// openMeta opens (creating) the metadata file.
func openMeta(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("snapshot metadata %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		r, err := tx.CreateBucketIfNotExists(bucketRoot)
		if err != nil {
			return err
		}
		_, err = r.CreateBucketIfNotExists(bucketSnapshots)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot metadata %s: %w", path, err)
	}
	return db, nil
}

func snapshots(tx *bolt.Tx) *bolt.Bucket {
	return tx.Bucket(bucketRoot).Bucket(bucketSnapshots)
}

func getRecord(tx *bolt.Tx, name string) (*record, error) {
	v := snapshots(tx).Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("snapshot %q: %w", name, layerstore.ErrNotFound)
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w: %w", name, err, layerstore.ErrCorrupt)
	}
	r.Name = name
	return &r, nil
}

func putRecord(tx *bolt.Tx, r *record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return snapshots(tx).Put([]byte(r.Name), v)
}

func allRecords(tx *bolt.Tx) ([]*record, error) {
	var out []*record
	err := snapshots(tx).ForEach(func(k, _ []byte) error {
		r, err := getRecord(tx, string(k))
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// hasChildren reports whether any snapshot names name as its parent.
func hasChildren(tx *bolt.Tx, name string) (bool, error) {
	rs, err := allRecords(tx)
	if err != nil {
		return false, err
	}
	for _, r := range rs {
		if r.Parent == name {
			return true, nil
		}
	}
	return false, nil
}
