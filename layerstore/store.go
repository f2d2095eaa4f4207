package layerstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// LockTimeout is how long to wait for another strata process to let go of
	// the store. Default 30s.
	LockTimeout time.Duration
	// Logger receives diagnostics. Default: discard.
	Logger *slog.Logger
	// Workers is how many layers of one image are ingested at once. Default 2.
	Workers int
	// MaxFileSize refuses layer files declared larger. Default 0: only the
	// free space of the store's file system limits them.
	MaxFileSize int64
	// Users lists what outside the store's metadata uses images (strata's
	// containers, from their records): RemoveImage refuses to delete an
	// image in use as docker's rmi does, and Prune keeps it. It is called
	// under the store's exclusive lock; see Use. Default: nothing does.
	Users func() ([]ImageUser, error)
}

// Store is a layer store rooted at a directory. Methods are safe for
// concurrent use. The bbolt file is opened per transaction, so a Store that
// is open holds no lock between calls.
type Store struct {
	root string
	opts Options
	log  *slog.Logger
	mu   sync.Mutex // one bbolt handle at a time in this process (flock is per open file)
}

// DefaultRoot is $STRATA_ROOT, else /var/lib/strata for root, else
// $XDG_DATA_HOME/strata (~/.local/share/strata); "" for a user with neither
// a home nor XDG_DATA_HOME (the caller must name a store).
func DefaultRoot() string {
	if r := os.Getenv("STRATA_ROOT"); r != "" {
		return r
	}
	if os.Geteuid() == 0 {
		return "/var/lib/strata"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "strata")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" || home == "/" {
		return "" // no home to keep a store in: the caller must name one
	}
	return filepath.Join(home, ".local", "share", "strata")
}

// Open opens the store at root, creating it if needed.
func Open(root string, opts *Options) (*Store, error) {
	s := &Store{root: root}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.LockTimeout == 0 {
		s.opts.LockTimeout = 30 * time.Second
	}
	if s.opts.Workers <= 0 {
		s.opts.Workers = 2
	}
	s.log = s.opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// A store that is there already costs a few stats and a read-only
	// transaction: every mount server opens one.
	for _, d := range []string{root, s.objectsDir(), s.tmpDir(), s.mountsDir(), s.treesDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if fi, err := os.Stat(filepath.Join(s.objectsDir(), "ff")); err != nil || !fi.IsDir() { // made last
		for i := 0; i < 256; i++ {
			if err := os.MkdirAll(filepath.Join(s.objectsDir(), fmt.Sprintf("%02x", i)), 0o700); err != nil {
				return nil, fmt.Errorf("open store: %w", err)
			}
		}
	}
	if _, err := os.Stat(s.dbPath()); err == nil && s.view(func(tx *bolt.Tx) error {
		r := tx.Bucket(bucketRoot)
		for _, b := range topBuckets {
			if r == nil || r.Bucket(b) == nil {
				return ErrNotFound
			}
		}
		if string(r.Get(keySchema)) != strconv.Itoa(schemaVersion) {
			return ErrNotFound
		}
		return nil
	}) == nil {
		return s, nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		r, err := tx.CreateBucketIfNotExists(bucketRoot)
		if err != nil {
			return err
		}
		for _, b := range topBuckets {
			if _, err := r.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// Migrations, in this one transaction: a kill leaves the store
		// as it was, or all of it done.
		v := 1
		if b := r.Get(keySchema); b != nil {
			if v, err = strconv.Atoi(string(b)); err != nil {
				return fmt.Errorf("open %s: schema %q: %w", root, b, ErrCorrupt)
			}
		}
		switch {
		case v > schemaVersion:
			return fmt.Errorf("open %s: the store has schema %d, this strata knows %d (a newer strata made it): %w", root, v, schemaVersion, ErrInvalid)
		case v == schemaVersion:
			return nil
		}
		if err := buildHolders(tx); err != nil { // 1 -> 3, 2 -> 3
			return fmt.Errorf("open %s: index the holders: %w", root, err)
		}
		return r.Put(keySchema, []byte(strconv.Itoa(schemaVersion)))
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// Close releases the store. It holds nothing between calls, so this only
// exists for symmetry and future use.
func (s *Store) Close() error { return nil }

func (s *Store) dbPath() string     { return filepath.Join(s.root, "meta.db") }
func (s *Store) objectsDir() string { return filepath.Join(s.root, "objects") }
func (s *Store) tmpDir() string     { return filepath.Join(s.root, "tmp") }
func (s *Store) mountsDir() string  { return filepath.Join(s.root, "mounts") }
func (s *Store) treesDir() string   { return filepath.Join(s.root, "trees") }

// ObjectPath is where the content of digest d lives. Objects are immutable:
// open them O_RDONLY only.
func (s *Store) ObjectPath(d digest.Digest) string {
	h := d.Encoded()
	if len(h) < 3 {
		return filepath.Join(s.objectsDir(), "invalid")
	}
	return filepath.Join(s.objectsDir(), h[:2], h[2:])
}

// MountDir is the directory that holds the state of mount id (its upper layer).
// An invalid id (see AddMount) gets a path that holds nothing.
func (s *Store) MountDir(id string) string { return MountDirIn(s.root, id) }

// MountDirIn is MountDir of the store at root, for a caller that need not
// open it.
func MountDirIn(root, id string) string {
	if checkMountID(id) != nil {
		return filepath.Join(root, "mounts", "invalid-id")
	}
	return filepath.Join(root, "mounts", id)
}

func (s *Store) openDB(readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(s.dbPath(), 0o600, &bolt.Options{Timeout: s.opts.LockTimeout, ReadOnly: readOnly})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%s: waited %s: %w", s.root, s.opts.LockTimeout, ErrLocked)
		}
		return nil, fmt.Errorf("open %s: %w", s.dbPath(), err)
	}
	return db, nil
}

// view runs fn in a read-only transaction under a shared lock.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.openDB(true)
	if err != nil {
		return err
	}
	return errors.Join(db.View(fn), db.Close())
}

// update runs fn in a read-write transaction under the exclusive lock.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.openDB(false)
	if err != nil {
		return err
	}
	return errors.Join(db.Update(func(tx *bolt.Tx) error {
		if err := reindexAfterOthers(tx); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		return stampIndexed(tx)
	}), db.Close())
}

// reindexAfterOthers builds the holders index anew when the last commit
// was not one that kept it: a strata from before the index (schema 1 code
// reads a schema 2 store without complaint) added or removed images or
// leases without their holder keys, and a sweep trusting the index would
// delete what they hold. Every transaction of this code stamps the root
// bucket with its ID, and bbolt numbers write transactions one by one, so
// a stamp other than the previous ID means another writer committed.
func reindexAfterOthers(tx *bolt.Tx) error {
	r := tx.Bucket(bucketRoot)
	if r == nil || string(r.Get(keySchema)) != strconv.Itoa(schemaVersion) {
		return nil // Open's migration builds it
	}
	if b := r.Get(keyIndexedTx); b != nil && string(b) == strconv.Itoa(tx.ID()-1) {
		return nil
	}
	return buildHolders(tx)
}

// indexCurrent reports whether tx may trust the holders index. A write
// transaction of update was reindexed first; a read transaction's ID is
// the last committed one's (bbolt increments it for writers only), which
// must be the one that stamped the index.
func indexCurrent(tx *bolt.Tx) bool {
	if tx.Writable() {
		return true
	}
	r := tx.Bucket(bucketRoot)
	return r != nil && string(r.Get(keyIndexedTx)) == strconv.Itoa(tx.ID())
}

// stampIndexed records that the index is right as of this transaction.
func stampIndexed(tx *bolt.Tx) error {
	r := tx.Bucket(bucketRoot)
	if r == nil || string(r.Get(keySchema)) != strconv.Itoa(schemaVersion) {
		return nil
	}
	return r.Put(keyIndexedTx, []byte(strconv.Itoa(tx.ID())))
}

func bucket(tx *bolt.Tx, name []byte) *bolt.Bucket { return tx.Bucket(bucketRoot).Bucket(name) }

// storeLock is the flock on <root>/lock: shared while objects are staged
// outside a transaction, exclusive while GC sweeps.
type storeLock struct{ f *os.File }

func (s *Store) lock(exclusive bool) (*storeLock, error) {
	return s.lockWithin(exclusive, s.opts.LockTimeout)
}

// lockWithin is lock, waiting at most wait.
func (s *Store) lockWithin(exclusive bool, wait time.Duration) (*storeLock, error) {
	f, err := os.OpenFile(filepath.Join(s.root, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	deadline := time.Now().Add(wait)
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return &storeLock{f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s: waited %s: %w", s.root, wait, ErrLocked)
			}
			return nil, fmt.Errorf("lock %s: %w", s.root, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *storeLock) unlock() error { return l.f.Close() }

// TmpDir is the store's staging directory, on the store's filesystem; GC
// removes what is left in it.
func (s *Store) TmpDir() string { return s.tmpDir() }
