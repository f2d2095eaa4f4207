package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// A container's output is kept in docker's json-file format: one JSON
// object a line, {"log":"…\n","stream":"stdout","time":"…"}, so that docker's
// tools read it and `logs -t` has each line's time.

// LogEntry is one line of a container's output.
type LogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// maxLogLine is where a line without a newline is cut into entries, as
// docker cuts at 16 KiB.
const maxLogLine = 16 << 10

// LogWriter appends a container's output to its log file. Its Stream
// methods return writers that may be used from different goroutines.
type LogWriter struct {
	mu  sync.Mutex
	f   *os.File
	now func() time.Time
}

// OpenLog opens (creating) the log file at path for appending.
func OpenLog(path string) (*LogWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &LogWriter{f: f, now: time.Now}, nil
}

// Close closes the log file.
func (w *LogWriter) Close() error { return w.f.Close() }

// Stream returns a writer for stream ("stdout" or "stderr") that writes an
// entry per line; Close it to write a last line without a newline.
func (w *LogWriter) Stream(stream string) io.WriteCloser {
	return &streamWriter{w: w, stream: stream}
}

func (w *LogWriter) write(stream string, line []byte) error {
	b, err := json.Marshal(LogEntry{Log: string(line), Stream: stream, Time: w.now().UTC()})
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.f.Write(append(b, '\n'))
	return err
}

type streamWriter struct {
	w      *LogWriter
	stream string
	buf    []byte
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 && len(s.buf) < maxLogLine {
			return len(p), nil
		}
		n := i + 1
		if i < 0 || n > maxLogLine {
			n = maxLogLine
		}
		if err := s.w.write(s.stream, s.buf[:n]); err != nil {
			return 0, err
		}
		s.buf = s.buf[n:]
	}
}

func (s *streamWriter) Close() error {
	if len(s.buf) == 0 {
		return nil
	}
	err := s.w.write(s.stream, s.buf)
	s.buf = nil
	return err
}

// LogOptions choose what ReadLog returns.
type LogOptions struct {
	// Tail is the number of last lines to return; < 0 means all.
	Tail int
	// Follow keeps reading as the log grows until Done reports true or ctx
	// ends.
	Follow bool
	// Done says whether the container has ended: with Follow, ReadLog
	// returns once it has and everything written is read.
	Done func() bool
	// Since drops entries before it (zero: none dropped).
	Since time.Time
}

// ReadLog calls fn with each entry of the log at path, as LogOptions say.
func ReadLog(ctx context.Context, path string, o LogOptions, fn func(LogEntry) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var entries []LogEntry
	emit := func(e LogEntry) error {
		if !o.Since.IsZero() && e.Time.Before(o.Since) {
			return nil
		}
		return fn(e)
	}
	// What is there now, tail applied.
	var partial []byte
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			partial = line // a line being written: read on when following
			break
		}
		if err != nil {
			return err
		}
		var e LogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("log %s: %w", path, err)
		}
		entries = append(entries, e)
		if o.Tail >= 0 && len(entries) > 2*o.Tail+1024 {
			// Keep only what the tail can still need.
			entries = append(entries[:0:0], entries[len(entries)-o.Tail:]...)
		}
	}
	if o.Tail >= 0 && len(entries) > o.Tail {
		entries = entries[len(entries)-o.Tail:]
	}
	for _, e := range entries {
		if err := emit(e); err != nil {
			return err
		}
	}
	if !o.Follow {
		return nil
	}
	for {
		done := o.Done != nil && o.Done() // checked before the read: no line is lost
		line, err := r.ReadBytes('\n')
		partial = append(partial, line...)
		if err == nil {
			var e LogEntry
			if err := json.Unmarshal(partial, &e); err != nil {
				return fmt.Errorf("log %s: %w", path, err)
			}
			partial = partial[:0]
			if err := emit(e); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
