package fs

import "sync"

// The state only a few nodes have at a time: a lock while one is opened or
// copied up, its passthrough handles, its open upper files. It lives in
// tables of the union keyed by node, not in the node: a walk makes a node
// of every entry it meets, and these fields in each (two mutexes, a
// counter, a channel and a map: 40 bytes) put a node in a 192-byte size
// class instead of 160.

// nodeState holds the union's tables of per-node state.
type nodeState struct {
	lockMu sync.Mutex
	locks  map[*node]*nodeLock // nodes locked or waited for
	free   []*nodeLock         // unused locks, to reuse

	ptMu sync.Mutex
	pt   map[*node]*ptHandles // nodes with passthrough handles open

	fmu   sync.RWMutex
	files map[*node]map[*upperFile]struct{} // open upper handles: fd-based access to unlinked files
}

type nodeLock struct {
	mu   sync.Mutex
	refs int // the holder and the waiters
}

// ptHandles counts a node's open passthrough handles on its lower object.
type ptHandles struct {
	n    int
	done chan struct{} // closed when n drops to 0
}

func (s *nodeState) init() {
	s.locks = map[*node]*nodeLock{}
	s.pt = map[*node]*ptHandles{}
	s.files = map[*node]map[*upperFile]struct{}{}
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

// ptOpen returns how many passthrough handles n has open, and a channel
// closed when they are all released (nil when none are open).
func (n *node) ptOpen() (int, <-chan struct{}) {
	s := &n.u.state
	s.ptMu.Lock()
	defer s.ptMu.Unlock()
	if h := s.pt[n]; h != nil {
		return h.n, h.done
	}
	return 0, nil
}

// ptAdd counts a new passthrough handle of n. Callers hold n's lock.
func (n *node) ptAdd() {
	s := &n.u.state
	s.ptMu.Lock()
	defer s.ptMu.Unlock()
	h := s.pt[n]
	if h == nil {
		h = &ptHandles{done: make(chan struct{})}
		s.pt[n] = h
	}
	h.n++
}

// ptRelease uncounts a released passthrough handle of n.
func (n *node) ptRelease() {
	s := &n.u.state
	s.ptMu.Lock()
	defer s.ptMu.Unlock()
	h := s.pt[n]
	h.n--
	if h.n == 0 {
		close(h.done)
		delete(s.pt, n)
	}
}

// anyFd returns an fd of an open upper handle of n, for files without a name.
func (n *node) anyFd() (int, bool) {
	s := &n.u.state
	s.fmu.RLock()
	defer s.fmu.RUnlock()
	for f := range s.files[n] {
		return f.fd, true
	}
	return -1, false
}

// withOpenFile runs fn on an open upper handle's fd of n, if n has one;
// the handle stays open meanwhile.
func (n *node) withOpenFile(fn func(fd int) error) (error, bool) {
	s := &n.u.state
	s.fmu.RLock()
	defer s.fmu.RUnlock()
	for f := range s.files[n] {
		return fn(f.fd), true
	}
	return nil, false
}

func (n *node) addFile(f *upperFile) {
	s := &n.u.state
	s.fmu.Lock()
	fs := s.files[n]
	if fs == nil {
		fs = map[*upperFile]struct{}{}
		s.files[n] = fs
	}
	fs[f] = struct{}{}
	s.fmu.Unlock()
}

func (n *node) removeFile(f *upperFile) {
	s := &n.u.state
	s.fmu.Lock()
	if fs := s.files[n]; fs != nil {
		delete(fs, f)
		if len(fs) == 0 {
			delete(s.files, n)
		}
	}
	s.fmu.Unlock()
}
