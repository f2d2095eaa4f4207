package mountserver

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/session"
)

// ParseArgs reads back what Args writes, every flag, whatever its value.
func TestArgs_RoundTrip(t *testing.T) {
	for _, c := range []Config{
		{Root: "/s", LockTimeout: 7 * time.Second, Ref: "demo:latest", Dir: "/mnt/x", ReadyFd: 3,
			Session: session.Options{ID: "abc", AllowOther: true}},
		{Root: "/s", LockTimeout: 30 * time.Second, Debug: true, Force: true, Ref: "-odd", Dir: "--also", ReadyFd: 4,
			Session: session.Options{ID: "d", ReadOnly: true, Suid: true, Dev: true, NoPassthrough: true, NoWriteback: true}},
	} {
		got, err := ParseArgs(c.Args())
		if err != nil {
			t.Fatalf("ParseArgs(%q): %v", c.Args(), err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("ParseArgs(%q) = %+v, want %+v", c.Args(), got, c)
		}
	}
	if _, err := ParseArgs([]string{"--protocol=0", "--", "a", "b"}); err == nil || !strings.Contains(err.Error(), "reinstall both") {
		t.Errorf("protocol 0: %v", err)
	}
	if _, err := ParseArgs([]string{"--nosuch"}); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("bad flag: %v", err)
	}
}

// A report fd that is not a pipe or socket is refused; a pipe gets one line.
func TestReporter_OnlyPipeOrSocket(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Reporter(int(f.Fd())); err == nil {
		t.Errorf("Reporter of a regular file: no error")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := syscall.Dup(int(w.Fd())) // the reporter's to close
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	report, err := Reporter(fd)
	if err != nil {
		t.Fatal(err)
	}
	report("ready x\nmore")
	report("again")
	b, _ := io.ReadAll(r)
	if string(b) != "ready x; more\n" {
		t.Errorf("report: %q", b)
	}
}
