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
	s      *Store
	dir    string
	replay bool // a stored layer read again (check): no import limits

	// Contents are hashed by the tar reader (a known small content costs no
	// file at all) and written by a pool of goroutines, small ones whole,
	// large ones in chunks as they are read: creating a file is the slowest
	// step of an import, and file systems overlap creates well.
	jobs    chan writeJob
	writers sync.WaitGroup

	// A content whose file is in objects/ already is the object of a
	// record, or garbage a crash left (GC's to remove): which one is
	// looked up (resolve), many at a time, as a layer ends, so that an
	// import reads the records of the objects it shares with the store
	// and no others. A small one's bytes wait in maybe meanwhile, a large
	// one's staged file.
	mu         sync.Mutex
	pending    map[digest.Digest]string   // digest -> staged file
	known      map[digest.Digest]bool     // its record was there when looked up
	maybe      map[digest.Digest]maybeObj // its file is in objects/: known if it has a record
	maybeBytes int                        // of the small ones in maybe
	seq        int
	err        error // first failure of a writer
	done       bool  // publish moved every pending object into objects/
}

// maybeObj is a content of maybe: its bytes, or its staged file.
type maybeObj struct {
	data []byte
	name string
}

// maxMaybeBytes bounds the small contents waiting in maybe: past it,
// resolve runs at once.
const maxMaybeBytes = 32 << 20

type writeJob struct {
	name string
	data []byte // the whole content, or
	// the content in pieces of at most chunkSize, taken from chunkPool
	// and put back once written; closed after the last.
	chunks chan []byte
	size   int64
}

// smallFile is the largest content staged through memory.
const smallFile = 1 << 20

// A file larger than smallFile goes to a writer in chunks of chunkSize, a
// few at a time.
const (
	chunkSize     = 256 << 10
	chunksPerFile = 4
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// stagingWriters is how many goroutines create staged files.
const stagingWriters = 4

func (s *Store) newStaging() (*staging, error) {
	dir, err := os.MkdirTemp(s.tmpDir(), "import-")
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	st := &staging{s: s, dir: dir, pending: map[digest.Digest]string{}, known: map[digest.Digest]bool{},
		maybe: map[digest.Digest]maybeObj{}, jobs: make(chan writeJob, 64)}
	for i := 0; i < stagingWriters; i++ {
		st.writers.Add(1)
		go st.writer()
	}
	return st, nil
}

func (st *staging) writer() {
	defer st.writers.Done()
	for j := range st.jobs {
		var err error
		if j.chunks != nil {
			err = writeChunked(j.name, j.chunks, j.size)
		} else {
			err = writeObjectFile(j.name, j.data)
		}
		if err != nil {
			st.fail(err)
		}
	}
}

func (st *staging) fail(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err == nil {
		st.err = err
	}
}

// failed is the first failure of a writer, if any yet.
func (st *staging) failed() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

func writeObjectFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return err
	}
	err = writeSparse(f, data, 0)
	if err == nil {
		err = truncateTo(f, int64(len(data)), data)
	}
	if err == nil {
		startWriteback(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// truncateTo sets f's size when the content ends in a hole (the last
// block was left unwritten); otherwise the writes did.
func truncateTo(f *os.File, size int64, tail []byte) error {
	if size > 0 && size%zeroBlock == 0 && len(tail) >= zeroBlock && isZero(tail[len(tail)-zeroBlock:]) {
		return f.Truncate(size)
	}
	return nil
}

// writeChunked writes the chunks of a large file as they come, and keeps
// taking them after a failure so that the sender never waits.
func writeChunked(name string, chunks chan []byte, size int64) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	var off int64
	for c := range chunks {
		if err == nil {
			err = writeSparse(f, c, off)
		}
		off += int64(len(c))
		c = c[:cap(c)]
		chunkPool.Put(&c)
	}
	if f == nil {
		return err
	}
	if err == nil && off == size {
		// The tail may be a hole; a size past the data is what Truncate is for.
		err = f.Truncate(size)
	}
	if err == nil {
		startWriteback(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// startWriteback has the kernel start writing f's pages out now, without
// waiting: by the time publish's syncfs comes, it finds them written and
// waits only for what is left (a few milliseconds instead of a tenth of a
// second or more for a 100 MB layer). Durability is still syncfs's: this
// only moves the work earlier, so its error does not matter.
func startWriteback(f *os.File) {
	unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
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
	if st.replay {
		return d
	}
	st.mu.Lock()
	met := st.met(d)
	st.mu.Unlock()
	if met {
		return d
	}
	inObjects := st.inObjects(d)
	st.mu.Lock()
	if st.met(d) {
		st.mu.Unlock()
		return d
	}
	if inObjects {
		st.maybe[d] = maybeObj{data: data}
		st.maybeBytes += len(data)
		full := st.maybeBytes > maxMaybeBytes
		st.mu.Unlock()
		if full {
			if err := st.resolve(); err != nil {
				st.fail(err)
			}
		}
		return d
	}
	st.seq++
	name := filepath.Join(st.dir, fmt.Sprintf("o%d", st.seq))
	st.pending[d] = name
	st.mu.Unlock()
	st.jobs <- writeJob{name: name, data: data}
	return d
}

// met reports whether d was met before in this import. The caller holds mu.
func (st *staging) met(d digest.Digest) bool {
	_, pending := st.pending[d]
	_, maybe := st.maybe[d]
	return pending || maybe || st.known[d]
}

// inObjects reports whether d's file is in objects/. Under the store's
// lock, which an import holds shared, none comes or goes but by imports.
func (st *staging) inObjects(d digest.Digest) bool {
	var stat unix.Stat_t
	return unix.Lstat(st.s.ObjectPath(d), &stat) == nil
}

// resolve looks up the records of the contents in maybe, in one read
// transaction: one with a record is known, any other is staged, to be
// published with the rest (a file in objects/ that no record names is
// garbage, which GC may remove once the import is over). Two may run at
// once (two layers ending together, a full maybe beside a layer's end):
// a content is the first one's to take out of maybe, and once out it is
// pending or known, so never in maybe again.
func (st *staging) resolve() error {
	st.mu.Lock()
	ds := make([]digest.Digest, 0, len(st.maybe))
	for d := range st.maybe {
		ds = append(ds, d)
	}
	st.mu.Unlock()
	if len(ds) == 0 {
		return nil
	}
	recorded := make([]bool, len(ds))
	if err := st.s.view(func(tx *bolt.Tx) error {
		ob := bucket(tx, bucketObjects)
		for i, d := range ds {
			recorded[i] = ob.Get([]byte(d)) != nil
		}
		return nil
	}); err != nil {
		return fmt.Errorf("look up objects: %w", err)
	}
	var jobs []writeJob
	st.mu.Lock()
	for i, d := range ds {
		m, ok := st.maybe[d]
		if !ok {
			continue // another resolve, looking it up meanwhile, took it
		}
		delete(st.maybe, d)
		st.maybeBytes -= len(m.data)
		switch {
		case recorded[i]:
			st.known[d] = true
		case m.name != "":
			st.pending[d] = m.name
		default:
			st.seq++
			name := filepath.Join(st.dir, fmt.Sprintf("o%d", st.seq))
			st.pending[d] = name
			jobs = append(jobs, writeJob{name: name, data: m.data})
		}
	}
	st.mu.Unlock()
	for _, j := range jobs {
		st.jobs <- j
	}
	return nil
}

const zeroBlock = 4096

var zeros [zeroBlock]byte

// add copies r (size bytes) into a staged object and returns its digest:
// it hashes here and a writer writes, a few chunks behind. Blocks of zeros
// become holes, so sparse files stay sparse on disk. A stream shorter than
// size is an error (io.ErrUnexpectedEOF).
func (st *staging) add(r io.Reader, size int64) (digest.Digest, error) {
	if err := st.failed(); err != nil {
		return "", fmt.Errorf("stage object: %w", err)
	}
	if st.replay {
		// A stored layer read again: its digest is all that is asked
		// for, and a copy of a file larger than the free space would fill
		// the disk.
		h := sha256.New()
		if n, err := io.CopyN(h, r, size); err != nil {
			if errors.Is(err, io.EOF) && n < size {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		return digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", h.Sum(nil))), nil
	}
	st.mu.Lock()
	st.seq++
	name := filepath.Join(st.dir, fmt.Sprintf("o%d", st.seq))
	st.mu.Unlock()
	chunks := make(chan []byte, chunksPerFile)
	st.jobs <- writeJob{name: name, chunks: chunks, size: size}
	// A file that fails half-written stays in the staging directory, which
	// discard removes.
	defer close(chunks)
	h := sha256.New()
	for off := int64(0); off < size; {
		n := int64(chunkSize)
		if size-off < n {
			n = size - off
		}
		bp := chunkPool.Get().(*[]byte)
		buf := (*bp)[:n]
		m, err := io.ReadFull(r, buf)
		h.Write(buf[:m])
		off += int64(m)
		chunks <- buf[:m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", h.Sum(nil)))
	st.mu.Lock()
	met := st.met(d)
	st.mu.Unlock()
	if met {
		return d, nil // its staged file goes with the staging directory
	}
	inObjects := st.inObjects(d)
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.met(d):
	case inObjects:
		st.maybe[d] = maybeObj{name: name}
	default:
		st.pending[d] = name
	}
	return d, nil
}

// writeSparse writes p at off, leaving whole zero blocks as holes: one
// write for each run of blocks that are not all zeros.
func writeSparse(f *os.File, p []byte, off int64) error {
	start := -1 // in p, of the run not yet written
	for i := 0; i < len(p); {
		n := zeroBlock - int((off+int64(i))%zeroBlock)
		if n > len(p)-i {
			n = len(p) - i
		}
		hole := n == zeroBlock && isZero(p[i:i+n])
		switch {
		case hole && start >= 0:
			if _, err := f.WriteAt(p[start:i], off+int64(start)); err != nil {
				return err
			}
			start = -1
		case !hole && start < 0:
			start = i
		}
		i += n
	}
	if start >= 0 {
		if _, err := f.WriteAt(p[start:], off+int64(start)); err != nil {
			return err
		}
	}
	return nil
}

func isZero(b []byte) bool { return string(b) == string(zeros[:len(b)]) }

// publish makes every staged object durable under objects/. After it
// returns, the objects may be named by a transaction.
func (st *staging) publish() error {
	if err := st.resolve(); err != nil {
		st.wait()
		return err
	}
	if err := st.wait(); err != nil {
		return fmt.Errorf("stage object: %w", err)
	}
	if len(st.pending) == 0 {
		st.done = true
		return nil
	}
	if err := syncfs(st.dir); err != nil {
		return err
	}
	// Renames in a few goroutines: each waits on its directories' locks.
	work := make(chan digest.Digest, len(st.pending))
	for d := range st.pending {
		work <- d
	}
	close(work)
	errs := make([]error, stagingWriters)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				// unix.Rename, not os.Rename: that one lstats the
				// target first (a stat per object, to refuse a
				// directory rename(2) refuses too).
				if err := unix.Rename(st.pending[d], st.s.ObjectPath(d)); err != nil {
					errs[i] = fmt.Errorf("publish object %s: %w", d, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := syncfs(st.s.objectsDir()); err != nil {
		return err
	}
	st.done = true
	return nil
}

// published reports whether d is an object publish made durable under
// objects/; false for one staging found recorded.
func (st *staging) published(d digest.Digest) bool {
	if !st.done {
		return false
	}
	_, ok := st.pending[d]
	return ok
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
