package layerstore

import (
	"errors"
	"io"
)

// inflater runs the first half of an ingest (reading the blob, hashing and
// counting it, decompressing it) in a goroutine of its own, a few chunks
// ahead of the tar reader that takes them. Inflating is about a third of an
// ingest's work; done in line, the tar reader would wait for it, and it for
// every file the tar reader hands over.
//
// Only the goroutine reads src. Stop waits for it, so after Stop the
// readers below src (the blob, its hashes) are the caller's again.
type inflater struct {
	chunks chan chunk    // decompressed bytes in order; closed at the end
	free   chan []byte   // chunks the reader is done with
	done   chan struct{} // closed by stop: the reader wants no more
	exited chan struct{} // closed when the goroutine has returned
	err    error         // why the stream ended (io.EOF: cleanly); read after chunks is closed
	pos    func() int64  // how far into the blob the goroutine has read; nil: not asked
	taken  func(int64)   // called by Read with the pos of each chunk it starts on

	// The reader's side.
	cur     []byte // what is left of the chunk being read
	buf     []byte // the whole of that chunk, to give back
	stopped bool
}

// chunk is decompressed bytes and how far into the blob the decompressor
// had read once they were out.
type chunk struct {
	b   []byte
	pos int64
}

// Chunks in flight: inflateChunks of inflateChunkSize each, bounded.
const (
	inflateChunks    = 8
	inflateChunkSize = 256 << 10
)

// startInflater reads src to its end in a goroutine, and closes it. When
// taken is not nil, Read reports to it how far into the blob (pos, read in
// the goroutine) the bytes it hands out came from: what the store has
// taken in of it.
func startInflater(src io.ReadCloser, pos func() int64, taken func(int64)) *inflater {
	if pos == nil || taken == nil {
		pos, taken = nil, nil
	}
	in := &inflater{
		pos:    pos,
		taken:  taken,
		chunks: make(chan chunk, inflateChunks),
		free:   make(chan []byte, inflateChunks+1),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	for i := 0; i < inflateChunks; i++ {
		in.free <- make([]byte, inflateChunkSize)
	}
	go in.run(src)
	return in
}

func (in *inflater) run(src io.ReadCloser) {
	defer close(in.exited)
	defer close(in.chunks)
	defer src.Close()
	for {
		var buf []byte
		select {
		case buf = <-in.free:
		case <-in.done:
			in.err = errStopped
			return
		}
		n, err := fill(src, buf)
		if n > 0 {
			c := chunk{b: buf[:n]}
			if in.pos != nil {
				c.pos = in.pos()
			}
			select {
			case in.chunks <- c:
			case <-in.done:
				in.err = errStopped
				return
			}
		}
		if err != nil {
			in.err = err
			return
		}
	}
}

// errStopped ends a stream whose reader stopped it; the reader never sees it.
var errStopped = errors.New("inflater stopped")

// fill reads into buf until it is full or src fails, keeping src's error
// as it is (a decompressor's io.ErrUnexpectedEOF says the stream was cut).
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (in *inflater) Read(p []byte) (int, error) {
	for len(in.cur) == 0 {
		if in.buf != nil {
			in.free <- in.buf[:cap(in.buf)]
			in.buf = nil
		}
		c, ok := <-in.chunks
		if !ok {
			return 0, in.err
		}
		in.cur, in.buf = c.b, c.b
		if in.taken != nil {
			in.taken(c.pos)
		}
	}
	n := copy(p, in.cur)
	in.cur = in.cur[n:]
	return n, nil
}

// stop tells the goroutine to end and waits until it has: it is between
// two reads of src, or at the end of one.
func (in *inflater) stop() {
	if in.stopped {
		return
	}
	in.stopped = true
	close(in.done)
	<-in.exited
}
