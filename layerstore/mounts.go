package layerstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// MountRecord is a lease held by a live mount: while it exists, GC and prune
// keep the mount's image, layers and objects.
type MountRecord struct {
	ID       string          `json:"id"`
	Image    digest.Digest   `json:"image"`
	Ref      string          `json:"ref"`     // what the user named
	Layers   []digest.Digest `json:"layers"`  // diffIDs of the image
	ChainID  digest.Digest   `json:"chainID"` //
	Dir      string          `json:"dir"`     // mountpoint, absolute
	PID      int             `json:"pid"`     // server process
	PIDStart uint64          `json:"pidStart"`
	ReadOnly bool            `json:"readOnly"`
	// Keep: the top layer outlives its server (a stopped container keeps
	// its writable layer), so the lease holds until it is removed. PID 0
	// then means no server serves it now.
	Keep bool `json:"keep,omitempty"`
	// Owner names what keeps the lease ("container:ID"): a kept lease
	// whose owner is gone is found by it and removed.
	Owner   string    `json:"owner,omitempty"`
	Created time.Time `json:"created"`
}

// Alive reports whether the lease holds: its server runs, or it is kept
// across restarts of its server (Keep). GC, prune, rmi and usage treat a
// lease that is not alive as garbage.
func (m *MountRecord) Alive() bool { return m.Keep || m.Running() }

// Running reports whether the server process of the mount still runs. The
// process start time guards against a reused pid; a zombie is not running.
func (m *MountRecord) Running() bool {
	if m.PID <= 0 {
		return false
	}
	state, st, err := procStat(m.PID)
	return err == nil && st == m.PIDStart && state != 'Z' && state != 'X'
}

// ProcessStart is the start time of pid in clock ticks since boot (field 22
// of /proc/pid/stat).
func ProcessStart(pid int) (uint64, error) {
	_, st, err := procStat(pid)
	return st, err
}

// procStat reads a process's state letter and start time.
func procStat(pid int) (byte, uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, ErrCorrupt)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, ErrCorrupt)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return f[0][0], st, err
}

// validMountID: a mount ID names a directory under mounts/, so it must be a
// plain name ("." and ".." would name the store itself).
// By hand: a regexp compiled at init cost every strata process.
func validMountID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

func checkMountID(id string) error {
	if !validMountID(id) {
		return fmt.Errorf("mount id %q: want letters, digits, '_', '.' and '-', starting with a letter or digit: %w", id, ErrInvalid)
	}
	return nil
}

// AddMount records a lease. The image must exist; the lease's layers and
// chain are taken from it, so what the lease protects is never up to the
// caller. A lease without a server pid is held by the calling process.
func (s *Store) AddMount(m MountRecord) error { return s.addMount(m, "") }

// AddMountDir is AddMount that also makes the mount's directory and sub
// (its top layer's, relative to it), in the transaction that records the
// lease: a kill at any point leaves both, or a directory no lease names
// (garbage, which GC removes), never a lease without its directory. Check
// reports a kept lease without its directory as a problem: its top layer
// was lost.
func (s *Store) AddMountDir(m MountRecord, sub string) error {
	if !filepath.IsLocal(sub) {
		return fmt.Errorf("mount %s: directory %q: %w", m.ID, sub, ErrInvalid)
	}
	return s.addMount(m, sub)
}

func (s *Store) addMount(m MountRecord, sub string) error {
	if err := checkMountID(m.ID); err != nil {
		return err
	}
	if m.PID <= 0 {
		m.PID = os.Getpid()
		st, err := ProcessStart(m.PID)
		if err != nil {
			return err
		}
		m.PIDStart = st
	}
	return s.update(func(tx *bolt.Tx) error {
		img, err := getImageCore(tx, m.Image)
		if err != nil {
			return err
		}
		m.Layers, m.ChainID = img.Layers, img.ChainID
		mb := bucket(tx, bucketMounts)
		if mb.Get([]byte(m.ID)) != nil {
			return fmt.Errorf("mount %s: %w", m.ID, ErrExists)
		}
		v, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := mb.Put([]byte(m.ID), v); err != nil {
			return err
		}
		if err := hold(tx, mountHolder(m.ID), m.Layers, m.ChainID, false); err != nil {
			return err
		}
		if sub == "" {
			return nil
		}
		// Under the store's write lock: GC and check, which look for
		// directories without a lease under it too, see both or neither.
		return os.MkdirAll(filepath.Join(s.MountDir(m.ID), sub), 0o700)
	})
}

// UpdateMount replaces a lease's server (pid and its start time; 0 for a
// kept mount no server serves), mountpoint and flags; what it protects stays
// as AddMount recorded it. Only the running server itself may hand a lease
// on: taking over one whose server runs in another process is refused with
// ErrInUse, so of two processes resuming one mount, one wins.
func (s *Store) UpdateMount(m MountRecord) error {
	if err := checkMountID(m.ID); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		mb := bucket(tx, bucketMounts)
		v := mb.Get([]byte(m.ID))
		if v == nil {
			return fmt.Errorf("mount %s: %w", m.ID, ErrNotFound)
		}
		var old MountRecord
		if err := json.Unmarshal(v, &old); err != nil {
			return fmt.Errorf("mount %s: %w: %w", m.ID, err, ErrCorrupt)
		}
		if old.PID != os.Getpid() && old.Running() {
			return fmt.Errorf("mount %s: served by pid %d: %w", m.ID, old.PID, ErrInUse)
		}
		m.Image, m.Layers, m.ChainID = old.Image, old.Layers, old.ChainID
		v, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return mb.Put([]byte(m.ID), v)
	})
}

// RemoveMount drops the mount's lease and then deletes its directory (its
// upper layer), returning once it is gone. In that order a crash at any
// point leaves the lease with its whole directory, or a directory no lease
// names, which check reports and GC removes; the other order left a lease
// whose top layer was half deleted, which neither does (a kept lease is
// alive; a GC meanwhile may take what is left of the directory, and count
// it). A mount made again under id before the directory is gone is the
// caller's to avoid (as a container's operations are serialized). What
// only the lease held (the layers, tree and objects of an image removed
// while mounted) goes with the lease, as an image removal deletes what it
// alone held: in the same transaction, object files after it commits.
// Removing a lease that is gone is not an error. When an import holds the
// store for longer than sweepWait, the lease still goes (an unmount does
// not wait for an import) and what it held is left for GC; Check reports
// it as garbage meanwhile.
func (s *Store) RemoveMount(id string) error { return s.removeMount(id, nil) }

// RemoveMountIf is RemoveMount of a lease whose server is still pid,
// started at start (0 and 0: a kept lease no server serves), as the caller
// saw it: one that another process took up meanwhile (a Resume) is refused
// with ErrInUse, in the transaction that would remove it, and so is its
// directory, which it serves now.
func (s *Store) RemoveMountIf(id string, pid int, start uint64) error {
	return s.removeMount(id, func(m *MountRecord) error {
		if m.PID != pid || m.PIDStart != start {
			return fmt.Errorf("mount %s: taken up by pid %d meanwhile: %w", id, m.PID, ErrInUse)
		}
		return nil
	})
}

// removeMount is RemoveMount; same, when not nil, is asked in the removing
// transaction whether the lease is still the one the caller saw.
func (s *Store) removeMount(id string, same func(*MountRecord) error) error {
	if err := checkMountID(id); err != nil {
		return err
	}
	if err := s.removeLease(id, same); err != nil {
		return err
	}
	// In place, not moved into tmp/ first: that the directory is gone
	// under mounts/ is what says the space is free (session's Unmount waits
	// for it).
	return os.RemoveAll(s.MountDir(id))
}

// removeLease is RemoveMount's part in the metadata. A torn lease cannot
// be compared by same: it goes (nothing can resume it either).
func (s *Store) removeLease(id string, same func(*MountRecord) error) error {
	// The common case: the lease's image is still stored, so it holds all
	// the lease held and nothing becomes garbage. Neither the sweep nor
	// the exclusive lock is needed then: the lease's holds go with it.
	errSweep := errors.New("sweep")
	switch err := s.update(func(tx *bolt.Tx) error {
		mb := bucket(tx, bucketMounts)
		v := mb.Get([]byte(id))
		if v == nil {
			return errSweep
		}
		var m MountRecord
		if err := json.Unmarshal(v, &m); err != nil {
			return errSweep
		}
		if same != nil {
			if err := same(&m); err != nil {
				return err
			}
		}
		if bucket(tx, bucketImages).Get([]byte(m.Image)) == nil {
			return errSweep
		}
		if err := hold(tx, mountHolder(id), m.Layers, m.ChainID, true); err != nil {
			return err
		}
		return mb.Delete([]byte(id))
	}); {
	case err == nil:
		return nil
	case !errors.Is(err, errSweep):
		return err
	}
	// Exclusive, as for image removal: an import may be counting on a layer
	// only this lease holds.
	lk, lerr := s.lockWithin(true, min(sweepWait, s.opts.LockTimeout))
	if lerr != nil && !errors.Is(lerr, ErrLocked) {
		return lerr
	}
	var doomed []objectFile
	if err := s.update(func(tx *bolt.Tx) error {
		mb := bucket(tx, bucketMounts)
		v := mb.Get([]byte(id))
		if v == nil {
			return nil // gone meanwhile, with what it held
		}
		var m MountRecord
		if err := json.Unmarshal(v, &m); err != nil {
			// What it held cannot be read: its holds go, and GC
			// sweeps what they held.
			if err := releaseAll(tx, mountHolder(id)); err != nil {
				return err
			}
			return mb.Delete([]byte(id))
		}
		if same != nil {
			if err := same(&m); err != nil {
				return err
			}
		}
		if err := hold(tx, mountHolder(id), m.Layers, m.ChainID, true); err != nil {
			return err
		}
		if err := mb.Delete([]byte(id)); err != nil {
			return err
		}
		if lk == nil {
			return nil
		}
		var err error
		_, doomed, err = sweepReleased(tx, m.Layers, m.ChainID)
		return err
	}); err != nil {
		if lk != nil {
			lk.unlock()
		}
		return err
	}
	if lk == nil {
		s.log.Warn("store busy: what the lease held is left for gc", "mount", id, "err", lerr)
		return nil
	}
	removeObjects(s, doomed)
	return lk.unlock()
}

// RemoveMountDir deletes the directory of mount id, which no lease names:
// whether one does is decided in a transaction, as GC decides it, so the
// directory of a mount being made under id now is never taken; then it
// fails with ErrInUse. A directory that is not there is no error.
func (s *Store) RemoveMountDir(id string) error {
	if err := checkMountID(id); err != nil {
		return err
	}
	if _, err := os.Lstat(s.MountDir(id)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	trash, err := os.MkdirTemp(s.tmpDir(), "rm-mount-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(trash)
	if err := s.view(func(tx *bolt.Tx) error {
		if bucket(tx, bucketMounts).Get([]byte(id)) != nil {
			return fmt.Errorf("mount %s: a lease names it: %w", id, ErrInUse)
		}
		return s.takeMountDir(trash, id)
	}); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

// sweepWait is how long RemoveMount waits for running imports before it
// leaves what the lease held to GC.
const sweepWait = 5 * time.Second

// Mount returns the lease of mount id, live or not; ErrNotFound when there
// is none. One key is read, where Mounts reads every lease.
func (s *Store) Mount(id string) (*MountRecord, error) {
	var m *MountRecord
	err := s.view(func(tx *bolt.Tx) error {
		v := bucket(tx, bucketMounts).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("mount %s: %w", id, ErrNotFound)
		}
		m = new(MountRecord)
		if err := json.Unmarshal(v, m); err != nil {
			return fmt.Errorf("mount %s: %w: %w", id, err, ErrCorrupt)
		}
		return nil
	})
	return m, err
}

// Mounts lists the leases, live or not.
func (s *Store) Mounts() ([]MountRecord, error) {
	var out []MountRecord
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = mountsTx(tx)
		return err
	})
	return out, err
}

func mountsTx(tx *bolt.Tx) ([]MountRecord, error) {
	var out []MountRecord
	err := bucket(tx, bucketMounts).ForEach(func(k, v []byte) error {
		var m MountRecord
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("mount %s: %w: %w", k, err, ErrCorrupt)
		}
		out = append(out, m)
		return nil
	})
	return out, err
}
