package container

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func readAll(t *testing.T, path string, o LogOptions) []LogEntry {
	t.Helper()
	var got []LogEntry
	if err := ReadLog(context.Background(), path, o, func(e LogEntry) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func render(es []LogEntry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s:%q ", e.Stream, e.Log)
	}
	return b.String()
}

func TestLog_LinesStreamsAndTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.json")
	w, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	out, errs := w.Stream("stdout"), w.Stream("stderr")
	out.Write([]byte("one\ntw"))
	errs.Write([]byte("err\n"))
	out.Write([]byte("o\nthree"))
	long := strings.Repeat("x", maxLogLine+10)
	errs.Write([]byte(long))
	out.Close()
	errs.Close()
	w.Close()

	all := readAll(t, path, LogOptions{Tail: -1})
	want := fmt.Sprintf("stdout:%q stderr:%q stdout:%q stderr:%q stdout:%q stderr:%q ",
		"one\n", "err\n", "two\n", long[:maxLogLine], "three", long[maxLogLine:])
	if got := render(all); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
	if !all[0].Time.Equal(time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)) {
		t.Errorf("first entry's time %v", all[0].Time)
	}
	if got := render(readAll(t, path, LogOptions{Tail: 2})); got != fmt.Sprintf("stdout:%q stderr:%q ", "three", long[maxLogLine:]) {
		t.Errorf("tail 2: %s", got)
	}
	if got := readAll(t, path, LogOptions{Tail: 0}); len(got) != 0 {
		t.Errorf("tail 0: %v", got)
	}
	if got := readAll(t, path, LogOptions{Tail: -1, Since: all[3].Time}); len(got) != 3 {
		t.Errorf("since the 4th entry: %d entries, want 3", len(got))
	}
}

func TestLog_Follow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.json")
	w, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	out := w.Stream("stdout")
	out.Write([]byte("before\n"))
	var done atomic.Bool
	got := make(chan string, 100)
	finished := make(chan error)
	go func() {
		finished <- ReadLog(context.Background(), path, LogOptions{Tail: -1, Follow: true, Done: done.Load}, func(e LogEntry) error {
			got <- e.Log
			return nil
		})
	}()
	if l := <-got; l != "before\n" {
		t.Fatalf("first line %q", l)
	}
	for i := range 50 {
		fmt.Fprintf(out, "line %d\n", i)
	}
	for i := range 50 {
		if l := <-got; l != fmt.Sprintf("line %d\n", i) {
			t.Fatalf("followed line %q, want line %d", l, i)
		}
	}
	out.Write([]byte("last\n"))
	w.Close()
	done.Store(true)
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	close(got)
	var rest []string
	for l := range got {
		rest = append(rest, l)
	}
	if len(rest) != 1 || rest[0] != "last\n" {
		t.Errorf("after the end: %q, want the last line", rest)
	}

	// A cancelled follow of a live container returns.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ReadLog(ctx, path, LogOptions{Tail: 0, Follow: true, Done: func() bool { return false }}, func(LogEntry) error { return nil }); err != context.Canceled {
		t.Errorf("cancelled follow: %v", err)
	}
}
