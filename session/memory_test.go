package session

import "testing"

// Under a heap that changes on every tick, one collection a tick; two on
// the first tick at rest (a pool's buffers go on the second), then none
// until the heap changes or free memory piles up.
func TestTrimmer_OneCollectionWhileBusyTwoAtRest(t *testing.T) {
	var tr trimmer
	collections := 0
	tick := func(heap, free uint64) {
		if n := tr.tick(heap, free); n > 0 {
			collections += n
			tr.last = heap
		}
	}
	for i := range 10 { // busy: the heap moves by 1 MiB each tick
		tick(uint64(4+i%2)<<20, 0)
	}
	if collections != 10 {
		t.Errorf("busy for 10 ticks: %d collections, want 10", collections)
	}
	tick(tr.last, 0) // the first tick at rest
	if collections != 12 {
		t.Errorf("first tick at rest: %d collections in all, want 12", collections)
	}
	for range 5 {
		tick(tr.last+100<<10, 0) // resting: small moves only
	}
	if collections != 12 {
		t.Errorf("at rest: %d collections in all, want 12", collections)
	}
	tick(tr.last, 2<<20) // 2 MiB free not handed back
	if collections != 13 {
		t.Errorf("2 MiB free: %d collections in all, want 13", collections)
	}
}
