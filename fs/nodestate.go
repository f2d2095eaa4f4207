package fs

import (
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The state only a few nodes have at a time: a lock while one is opened or
// copied up, its open upper files, the pin of one whose name is gone. It
// lives in tables of the union keyed by node, not in the node: a walk makes
// a node of every entry it meets, and these fields in each (two mutexes, a
// counter, a channel and a map: 40 bytes) put a node in a 192-byte size
// class instead of 160.

// nodeState holds the union's tables of per-node state.
type nodeState struct {
	lockMu sync.Mutex
	locks  map[*node]*nodeLock // nodes locked or waited for
	free   []*nodeLock         // unused locks, to reuse

	// fmu guards only the tables: no system call runs under it.
	fmu   sync.Mutex
	files map[*node]*upperFds      // open upper handles and pins: access to files without a name
	pins  atomic.Int64             // how many nodes have a pin
	objs  map[*objectFile]struct{} // object handles holding a descriptor, until released (closeHandles)
}

type nodeLock struct {
	mu   sync.Mutex
	refs int // the holder and the waiters
}

func (s *nodeState) init() {
	s.locks = map[*node]*nodeLock{}
	s.files = map[*node]*upperFds{}
	s.objs = map[*objectFile]struct{}{}
}

// lock serializes opens and data copy-up of n. Lock order: a node's lock
// before nsMu.
func (n *node) lock() {
	s := &n.u.state
	s.lockMu.Lock()
	l := s.locks[n]
	if l == nil {
		if k := len(s.free); k > 0 {
			l, s.free = s.free[k-1], s.free[:k-1]
		} else {
			l = &nodeLock{}
		}
		s.locks[n] = l
	}
	l.refs++
	s.lockMu.Unlock()
	l.mu.Lock()
}

func (n *node) unlock() {
	s := &n.u.state
	s.lockMu.Lock()
	l := s.locks[n]
	l.refs--
	if l.refs == 0 {
		delete(s.locks, n)
		if len(s.free) < 64 {
			s.free = append(s.free, l)
		}
	}
	l.mu.Unlock()
	s.lockMu.Unlock()
}

// holdFd returns a descriptor of n's upper inode that needs no path (an
// open upper handle's, else n's pin), held until the caller drops it: a handle released
// meanwhile does not close it, so its number cannot be closed, or reused by
// another open, under the request using it.
func (n *node) holdFd() (*fdRef, bool) {
	s := &n.u.state
	s.fmu.Lock()
	defer s.fmu.Unlock()
	fs := s.files[n]
	if fs == nil {
		return nil, false
	}
	r := fs.pin
	if len(fs.open) > 0 {
		r = &fs.open[0].fdRef
	}
	if r == nil {
		return nil, false
	}
	r.refs.Add(1)
	return r, true
}

// withOpenFile runs fn on a held descriptor from holdFd, if n has one. Only
// the lookup holds the table's lock, not fn.
func (n *node) withOpenFile(fn func(fd int) error) (error, bool) {
	r, ok := n.holdFd()
	if !ok {
		return nil, false
	}
	defer r.drop()
	return fn(r.fd), true
}

// upperFds reach a node's upper inode without its path.
type upperFds struct {
	open []*upperFile // open upper handles
	pin  *fdRef       // O_PATH, from when its name went until it is forgotten
}

// fdRef is a descriptor shared by its holders: the one that made it and
// those that took it from the table (under fmu, while it is there). The
// last to drop it closes it.
type fdRef struct {
	fd   int
	refs atomic.Int32
}

func (r *fdRef) init(fd int) {
	r.fd = fd
	r.refs.Store(1)
}

func (r *fdRef) drop() error {
	if r.refs.Add(-1) == 0 {
		return unix.Close(r.fd)
	}
	return nil
}

// entry returns n's upperFds, made if missing. Callers hold fmu.
func (s *nodeState) entry(n *node) *upperFds {
	fs := s.files[n]
	if fs == nil {
		fs = &upperFds{}
		s.files[n] = fs
	}
	return fs
}

// release forgets n's upperFds once they hold nothing. Callers hold fmu.
func (s *nodeState) release(n *node, fs *upperFds) {
	if len(fs.open) == 0 && fs.pin == nil {
		delete(s.files, n)
	}
}

func (n *node) addFile(f *upperFile) {
	s := &n.u.state
	s.fmu.Lock()
	fs := s.entry(n)
	fs.open = append(fs.open, f)
	s.fmu.Unlock()
}

func (n *node) removeFile(f *upperFile) {
	s := &n.u.state
	s.fmu.Lock()
	if fs := s.files[n]; fs != nil {
		if i := slices.Index(fs.open, f); i >= 0 {
			fs.open = slices.Delete(fs.open, i, i+1)
		}
		s.release(n, fs)
	}
	s.fmu.Unlock()
}

// pin keeps fd, an O_PATH descriptor of n's upper inode, open until n is
// forgotten: n has lost its name (unlinked, replaced by a rename, or made
// without one), and the kernel, which may still reach it through an open
// file, a /proc/self/fd link or a working directory, asks for it by inode.
// An open handle keeps the inode too, but a handle that opened the object
// before copy-up does not, and handles go before the kernel forgets. A
// second pin of the same node is closed.
func (n *node) pin(fd int) {
	s := &n.u.state
	s.fmu.Lock()
	fs := s.entry(n)
	if fs.pin == nil {
		fs.pin = &fdRef{}
		fs.pin.init(fd)
		s.pins.Add(1)
		fd = -1
	}
	s.fmu.Unlock()
	if fd >= 0 {
		unix.Close(fd)
	}
}

// unpin drops n's pin, when the kernel forgot n. An inode with no name
// left is gone then, and so is its entry in the union's inode map (dropIno):
// the pin still holds the inode, so its number is not reused yet.
func (n *node) unpin() {
	s := &n.u.state
	if s.pins.Load() == 0 {
		return // the usual forget: no lock taken
	}
	s.fmu.Lock()
	fs := s.files[n]
	if fs == nil || fs.pin == nil {
		s.fmu.Unlock()
		return
	}
	p := fs.pin
	fs.pin = nil
	s.pins.Add(-1)
	s.release(n, fs)
	s.fmu.Unlock()
	if st, err := fstat(p.fd); err == nil && st.Nlink == 0 {
		n.u.dropIno(st.Ino, n.ino)
	}
	p.drop()
}

// dropPins drops every pin, when the mount has ended.
func (s *nodeState) dropPins() {
	s.fmu.Lock()
	var pins []*fdRef
	for n, fs := range s.files {
		if fs.pin != nil {
			pins = append(pins, fs.pin)
			fs.pin = nil
			s.pins.Add(-1)
			s.release(n, fs)
		}
	}
	s.fmu.Unlock()
	for _, p := range pins {
		p.drop()
	}
}

// closeHandles releases the upper and object handles still open when the
// mount has ended: a connection aborted with files open sends no RELEASE,
// and a process serving many mounts would keep their descriptors for good.
// Raw handles are rawFiles.closeAll's.
func (s *nodeState) closeHandles() {
	s.fmu.Lock()
	var ups []*upperFile
	for _, fs := range s.files {
		ups = append(ups, fs.open...)
	}
	objs := make([]*objectFile, 0, len(s.objs))
	for h := range s.objs {
		objs = append(objs, h)
	}
	s.fmu.Unlock()
	for _, f := range ups {
		f.Release(nil)
	}
	for _, h := range objs {
		h.Release(nil)
	}
}

// track records that object handle h holds a descriptor now.
func (s *nodeState) track(h *objectFile) {
	s.fmu.Lock()
	s.objs[h] = struct{}{}
	s.fmu.Unlock()
}

func (s *nodeState) untrack(h *objectFile) {
	s.fmu.Lock()
	delete(s.objs, h)
	s.fmu.Unlock()
}
