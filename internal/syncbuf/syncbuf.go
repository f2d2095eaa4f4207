// Package syncbuf holds Buffer, the text a child process's stdout and
// stderr write to at once while another goroutine reads it.
package syncbuf

import (
	"strings"
	"sync"
)

// Buffer is a strings.Builder that is safe for concurrent use. The zero
// value is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset empties the buffer.
func (s *Buffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}
