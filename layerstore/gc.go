package layerstore

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// GCReport says what GC removed.
type GCReport struct {
	Mounts    []string // stale leases dropped (mount IDs)
	Layers    []digest.Digest
	Objects   int   // object files removed
	Trees     int   // tree files no record names, removed
	Staging   int   // tmp/ entries removed
	Downloads int   // downloads/ entries removed (blobs a pull began)
	Reclaimed int64 // bytes on disk
}

// GC drops leases of mounts whose server is gone (the caller detaches their
// mountpoints first), every layer and tree nothing holds, object and tree
// files no record names, staging leftovers, the downloads pulls left and
// the directories under mounts/ no lease names. It holds the store lock
// exclusively, so no import is mid-way; leases are made without it, so
// whether a directory has one is decided in the transaction that takes it.
func (s *Store) GC() (*GCReport, error) {
	lk, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()
	rep := &GCReport{}
	// Mount directories leave mounts/ for trash inside the transactions that
	// find them without a lease (see takeMountDir), and are deleted after.
	trash, err := os.MkdirTemp(s.tmpDir(), "gc-mounts-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(trash)
	var doomed []objectFile
	known := map[digest.Digest]bool{}
	knownTrees := map[string]bool{} // tree file names the records name
	err = s.update(func(tx *bolt.Tx) error {
		mounts, err := mountsTx(tx)
		if err != nil {
			return err
		}
		for _, m := range mounts {
			if !m.Alive() {
				rep.Mounts = append(rep.Mounts, m.ID)
				if err := hold(tx, mountHolder(m.ID), m.Layers, m.ChainID, true); err != nil {
					return err
				}
				if err := bucket(tx, bucketMounts).Delete([]byte(m.ID)); err != nil {
					return err
				}
				if err := s.takeMountDir(trash, m.ID); err != nil {
					return err
				}
			}
		}
		rep.Layers, doomed, err = sweep(tx)
		if err != nil {
			return err
		}
		bucket(tx, bucketTrees).ForEach(func(k, _ []byte) error {
			if rec, err := getTreeRecord(tx, digest.Digest(k)); err == nil {
				knownTrees[rec.File.Encoded()] = true
			}
			return nil
		})
		return bucket(tx, bucketObjects).ForEach(func(k, _ []byte) error {
			known[digest.Digest(k)] = true
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	rep.Reclaimed += removeObjects(s, doomed)
	for _, o := range doomed {
		if o.tree {
			rep.Trees++
		} else {
			rep.Objects++
		}
	}
	for i := 0; i < 256; i++ {
		dir := filepath.Join(s.objectsDir(), fmt.Sprintf("%02x", i))
		names, err := readDirNames(dir)
		if err != nil {
			return rep, err
		}
		for _, n := range names {
			d := digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%02x", i)+n)
			if !known[d] {
				p := filepath.Join(dir, n)
				rep.Reclaimed += diskUsage(p)
				if err := os.Remove(p); err != nil {
					return rep, err
				}
				rep.Objects++
			}
		}
	}
	names, err := readDirNames(s.treesDir())
	if err != nil {
		return rep, err
	}
	for _, n := range names {
		if !knownTrees[n] {
			p := filepath.Join(s.treesDir(), n)
			rep.Reclaimed += diskUsage(p)
			if err := os.Remove(p); err != nil {
				return rep, err
			}
			rep.Trees++
		}
	}
	names, err = readDirNames(s.tmpDir())
	if err != nil {
		return rep, err
	}
	for _, n := range names {
		p := filepath.Join(s.tmpDir(), n)
		if p == trash {
			continue
		}
		rep.Reclaimed += dirUsage(p)
		if err := os.RemoveAll(p); err != nil {
			return rep, err
		}
		rep.Staging++
	}
	dls, other, err := s.downloads()
	if err != nil {
		return rep, err
	}
	for _, n := range append(slices.Collect(maps.Keys(dls)), other...) {
		p := filepath.Join(s.downloadsDir(), n)
		rep.Reclaimed += dirUsage(p)
		if err := os.RemoveAll(p); err != nil {
			return rep, err
		}
		rep.Downloads++
	}
	// Directories no lease names (a crash between a removal's two steps,
	// or a lease GC dropped above), decided in one transaction with the
	// leases: a session makes its directory in the transaction of its
	// lease (or after it), so one starting now is either seen here with
	// its lease or makes its directory after this commits.
	// A read transaction is enough: it holds meta.db's lock shared, and a
	// lease is made under it exclusively.
	if err := s.view(func(tx *bolt.Tx) error {
		names, err := readDirNames(s.mountsDir())
		if err != nil {
			return err
		}
		mb := bucket(tx, bucketMounts)
		for _, n := range names {
			if mb.Get([]byte(n)) == nil {
				if err := s.takeMountDir(trash, n); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return rep, err
	}
	taken, err := readDirNames(trash)
	if err != nil {
		return rep, err
	}
	for _, n := range taken {
		rep.Reclaimed += dirUsage(filepath.Join(trash, n))
	}
	if err := os.RemoveAll(trash); err != nil {
		return rep, err
	}
	return rep, nil
}

// dirUsage is DirUsage for an estimate: what cannot be measured counts 0.
func dirUsage(p string) int64 {
	n, _ := DirUsage(p)
	return n
}

// takeMountDir moves mount directory name out of mounts/ into trash (under
// tmp/, on the same filesystem), in a transaction that found no lease of
// it: no lease can be made meanwhile, so the directory of a mount being
// made is never taken, and the rename is quick however large the directory
// is. A kill after it leaves the directory in tmp/, which GC removes as a
// staging leftover. A directory that is not there is no error.
func (s *Store) takeMountDir(trash, name string) error {
	if name != filepath.Base(name) || name == ".." {
		return nil // not a name in mounts/ (a torn lease's ID)
	}
	err := os.Rename(filepath.Join(s.mountsDir(), name), filepath.Join(trash, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
