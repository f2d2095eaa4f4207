package layerstore

import (
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
// files no record names, staging leftovers and the downloads pulls left. It holds the store lock exclusively,
// so no import is mid-way.
func (s *Store) GC() (*GCReport, error) {
	lk, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()
	rep := &GCReport{}
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
	for _, id := range rep.Mounts {
		rep.Reclaimed += dirUsage(s.MountDir(id))
		if err := os.RemoveAll(s.MountDir(id)); err != nil {
			return rep, err
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
	ms, err := s.Mounts()
	if err != nil {
		return rep, err
	}
	live := map[string]bool{}
	for _, m := range ms {
		live[m.ID] = true
	}
	names, err = readDirNames(s.mountsDir())
	if err != nil {
		return rep, err
	}
	for _, n := range names {
		if !live[n] {
			p := filepath.Join(s.mountsDir(), n)
			rep.Reclaimed += dirUsage(p)
			if err := os.RemoveAll(p); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

// dirUsage is DirUsage for an estimate: what cannot be measured counts 0.
func dirUsage(p string) int64 {
	n, _ := DirUsage(p)
	return n
}
