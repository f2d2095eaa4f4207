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
// their memory is. It costs a garbage collection of the small heap after
// the heap changed (twice: pooled buffers go on the second) or when more
// than a MiB lies free, nothing while the mount rests.
func TrimMemory(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var ms runtime.MemStats
	var last uint64 // heap after the last trim
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		runtime.ReadMemStats(&ms)
		changed := ms.HeapAlloc > last+256<<10 || ms.HeapAlloc+256<<10 < last
		if changed || ms.HeapIdle-ms.HeapReleased > 1<<20 {
			// Twice: a sync.Pool's items (go-fuse's 132 KiB request
			// buffers) survive one collection in its victim cache,
			// and the heap would not change again to trigger a
			// second.
			debug.FreeOSMemory()
			debug.FreeOSMemory()
			runtime.ReadMemStats(&ms)
			last = ms.HeapAlloc
		}
	}
}
