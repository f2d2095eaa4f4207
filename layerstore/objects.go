package layerstore

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// staging collects the objects of one import in tmp/<id>/ and moves them into
// objects/ in one step: flush everything with syncfs, rename, flush again.
// Two syncfs calls per import instead of one fsync per file is what lets an
// import keep up with tar -x.
type staging struct {
	s   *Store
	dir string

	// Small files are hashed in memory first (a known content costs no file
	// at all) and written by a pool of goroutines: creating a file is the
	// slowest step of an import, and file systems overlap creates well.
	jobs    chan writeJob
	writers sync.WaitGroup

	mu      sync.Mutex
	pending map[digest.Digest]string // digest -> staged file
	known   func(digest.Digest) bool // already a committed object
	seq     int
	err     error // first failure of a writer
}

type writeJob struct {
	name string
	data []byte
}

// smallFile is the largest content staged through memory.
const smallFile = 1 << 20

func (s *Store) newStaging(known func(digest.Digest) bool) (*staging, error) {
	dir, err := os.MkdirTemp(s.tmpDir(), "import-")
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	st := &staging{s: s, dir: dir, pending: map[digest.Digest]string{}, known: known, jobs: make(chan writeJob, 64)}
	for i := 0; i < 4; i++ {
		st.writers.Add(1)
		go st.writer()
	}
	return st, nil
}

func (st *staging) writer() {
	defer st.writers.Done()
	for j := range st.jobs {
		if err := writeObjectFile(j.name, j.data); err != nil {
			st.mu.Lock()
			if st.err == nil {
				st.err = err
			}
			st.mu.Unlock()
		}
	}
}

func writeObjectFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return err
	}
	err = writeSparse(f, data, 0)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// wait lets the writers finish; after it no job may be added.
func (st *staging) wait() error {
	if st.jobs != nil {
		close(st.jobs)
		st.writers.Wait()
		st.jobs = nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

// addSmall stages a content held in memory.
func (st *staging) addSmall(data []byte) digest.Digest {
	sum := sha256.Sum256(data)
	d := digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", sum[:]))
	st.mu.Lock()
	if _, dup := st.pending[d]; dup || st.known(d) {
		st.mu.Unlock()
		return d
	}
	st.seq++
	name := filepath.Join(st.dir, fmt.Sprintf("o%d", st.seq))
	st.pending[d] = name
	st.mu.Unlock()
	st.jobs <- writeJob{name: name, data: data}
	return d
}

const zeroBlock = 4096

var zeros [zeroBlock]byte

// add copies r (size bytes) into a staged object and returns its digest.
// Blocks of zeros become holes, so sparse files stay sparse on disk. A stream
// shorter than size is an error (io.ErrUnexpectedEOF).
func (st *staging) add(r io.Reader, size int64, buf []byte) (digest.Digest, error) {
	st.mu.Lock()
	st.seq++
	name := filepath.Join(st.dir, fmt.Sprintf("o%d", st.seq))
	st.mu.Unlock()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	var off int64
	err = func() error {
		for off < size {
			n := int64(len(buf))
			if size-off < n {
				n = size - off
			}
			m, err := io.ReadFull(r, buf[:n])
			if m > 0 {
				h.Write(buf[:m])
				if werr := writeSparse(f, buf[:m], off); werr != nil {
					return werr
				}
				off += int64(m)
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		return f.Truncate(size)
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", h.Sum(nil)))
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, dup := st.pending[d]; dup || st.known(d) {
		os.Remove(name)
		return d, nil
	}
	st.pending[d] = name
	return d, nil
}

// writeSparse writes p at off, skipping whole zero blocks.
func writeSparse(f *os.File, p []byte, off int64) error {
	for len(p) > 0 {
		n := zeroBlock - int(off%zeroBlock)
		if n > len(p) {
			n = len(p)
		}
		chunk := p[:n]
		if n != zeroBlock || string(chunk) != string(zeros[:]) {
			if _, err := f.WriteAt(chunk, off); err != nil {
				return err
			}
		}
		p = p[n:]
		off += int64(n)
	}
	return nil
}

// publish makes every staged object durable under objects/. After it
// returns, the objects may be named by a transaction.
func (st *staging) publish() error {
	if err := st.wait(); err != nil {
		return fmt.Errorf("stage object: %w", err)
	}
	if len(st.pending) == 0 {
		return nil
	}
	if err := syncfs(st.dir); err != nil {
		return err
	}
	for d, name := range st.pending {
		if err := os.Rename(name, st.s.ObjectPath(d)); err != nil {
			return fmt.Errorf("publish object %s: %w", d, err)
		}
	}
	return syncfs(st.s.objectsDir())
}

// discard removes the staging directory. Published objects stay: until a
// transaction names them they are garbage for GC.
func (st *staging) discard() error {
	st.wait()
	return os.RemoveAll(st.dir)
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// objectRecord is the value of objects/<digest>.
type objectRecord struct {
	Size int64
	Refs uint64
}

func (r objectRecord) marshal() []byte {
	b := binary.AppendUvarint(nil, uint64(r.Size))
	return binary.AppendUvarint(b, r.Refs)
}

func unmarshalObject(b []byte) (objectRecord, error) {
	size, n := binary.Uvarint(b)
	if n <= 0 {
		return objectRecord{}, ErrCorrupt
	}
	refs, m := binary.Uvarint(b[n:])
	if m <= 0 {
		return objectRecord{}, ErrCorrupt
	}
	return objectRecord{Size: int64(size), Refs: refs}, nil
}

// refObject adds delta to the reference count of d, creating or deleting its
// record. It returns true when the record was deleted (the file may go).
func refObject(tx *bolt.Tx, d digest.Digest, size int64, delta int) (bool, error) {
	b := bucket(tx, bucketObjects)
	k := []byte(d)
	rec := objectRecord{Size: size}
	if v := b.Get(k); v != nil {
		var err error
		if rec, err = unmarshalObject(v); err != nil {
			return false, fmt.Errorf("object %s: %w", d, err)
		}
	}
	n := int64(rec.Refs) + int64(delta)
	if n <= 0 {
		return true, b.Delete(k)
	}
	rec.Refs = uint64(n)
	return false, b.Put(k, rec.marshal())
}
