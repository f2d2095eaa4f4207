package session

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"
)

// TrimMemory hands the memory the process freed back to the system every
// interval until ctx ends, for a process that serves mounts. A mount server
// is idle most of its life with a small heap, and the Go runtime would keep
// the pages a walk of the mount left free (and go-fuse's pooled request
// buffers) for minutes: with a hundred servers on a node, that is what
// their memory is. It costs a garbage collection of the small heap on a
// tick where the heap changed or more than a MiB lies free, two on the
// first tick it rests after a change (see trimmer), and nothing while the
// mount rests.
func TrimMemory(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var ms runtime.MemStats
	var tr trimmer
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		runtime.ReadMemStats(&ms)
		if n := tr.tick(ms.HeapAlloc, ms.HeapIdle-ms.HeapReleased); n > 0 {
			for range n {
				debug.FreeOSMemory()
			}
			runtime.ReadMemStats(&ms)
			tr.last = ms.HeapAlloc
		}
	}
}

// trimmer decides on each of TrimMemory's ticks how many collections to
// make. A sync.Pool's items (go-fuse's 132 KiB request buffers) survive
// one collection in its victim cache, so the buffers a mount's I/O left
// in the pool go only with two collections after it: those are made on
// the first tick the heap rests after a change (it would not change again
// to trigger them). While the heap changes, one a tick, not two: the pool
// keeps its buffers while they are in use.
type trimmer struct {
	last     uint64 // heap after the last collection
	settling bool   // the heap changed since the last collections at rest
}

// tick says how many collections to make now, given the heap in use and
// the free heap not yet handed back; the caller sets last after them.
func (tr *trimmer) tick(heap, free uint64) int {
	if heap > tr.last+256<<10 || heap+256<<10 < tr.last {
		tr.settling = true
		return 1
	}
	if tr.settling {
		tr.settling = false
		return 2
	}
	if free > 1<<20 {
		return 1
	}
	return 0
}
