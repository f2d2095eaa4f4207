package mountserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/session"
)

// ParseArgs reads back what ServerArgs writes.
func TestServerArgs_RoundTrip(t *testing.T) {
	c := Config{Root: "/s", LockTimeout: 9 * time.Second, ReadyFd: 3, Listen: "/s/servers/k-1.sock", MaxMounts: 5, Idle: 1500 * time.Millisecond}
	c.Session.AllowOther = true // the flag's default; a server ignores it
	got, err := ParseArgs(c.ServerArgs())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("ParseArgs(%q) = %+v, want %+v", c.ServerArgs(), got, c)
	}
	for _, bad := range [][]string{
		{"--protocol=2", "--listen", "/x", "--", "a", "b"},
		{"--protocol=2", "--listen", "/x", "--max-mounts", "0"},
	} {
		if _, err := ParseArgs(bad); err == nil {
			t.Errorf("ParseArgs(%q): no error", bad)
		}
	}
}

// A request carries every flag of the mount.
func TestRequest_RoundTrip(t *testing.T) {
	for _, c := range []Config{
		{Root: "/s", Ref: "demo", Dir: "/m", Session: session.Options{ID: "abc", AllowOther: true}},
		{Root: "/s", Ref: "x:y", Dir: "/n", Force: true, Session: session.Options{ID: "d", ReadOnly: true, Suid: true, Dev: true, NoPassthrough: true, NoWriteback: true}},
	} {
		b, err := json.Marshal(newRequest(c))
		if err != nil {
			t.Fatal(err)
		}
		var r request
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.Protocol != Protocol {
			t.Errorf("protocol %d", r.Protocol)
		}
		if got := r.config(); !reflect.DeepEqual(got, c) {
			t.Errorf("request %s = %+v, want %+v", b, got, c)
		}
	}
}

// A strata-mount of an older build refuses: in a report line, or (one from
// before --protocol) on stderr and in its exit.
func TestIsRefusal(t *testing.T) {
	for _, tc := range []struct {
		line  string
		ended error
		want  bool
	}{
		{"error: " + refusal + "this strata-mount speaks protocol 1", nil, true},
		{"error: strata-mount: flag provided but not defined: -listen (it takes ...)", nil, true},
		{"", errors.New("flag provided but not defined: -protocol\nUsage of strata-mount:"), true},
		{"error: no such image", nil, false},
		{"", errors.New("signal: killed"), false},
		{"ready x", nil, false},
	} {
		if got := IsRefusal(tc.line, tc.ended); got != tc.want {
			t.Errorf("IsRefusal(%q, %v) = %v", tc.line, tc.ended, got)
		}
	}
}

// A client that connects while the server exits for want of mounts is
// told so or finds it gone, and was never taken; a client then finds no
// server and starts one instead of failing.
func TestShared_ExitWhileAsked(t *testing.T) {
	root := storetest.Root(t)
	dir := ServersDir(root)
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := serversDir(dir); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "k-1.sock")
	c := Config{Root: root, Ref: "demo", Dir: t.TempDir(), Session: session.Options{ID: "0123456789ab"}}
	req, err := json.Marshal(newRequest(c))
	if err != nil {
		t.Fatal(err)
	}
	var late *net.UnixConn
	exiting := func() { // the server has decided to exit
		if late, err = dialUnix(sock); err != nil {
			t.Error(err)
			return
		}
		if _, err := late.Write(append(req, '\n')); err != nil {
			t.Error(err)
		}
	}
	if err := runShared(context.Background(), Config{Root: root, Listen: sock, MaxMounts: 2, Idle: time.Millisecond}, &Report{}, exiting); err != nil {
		t.Fatal(err)
	}
	if late == nil {
		t.Fatal("the server exited without deciding to")
	}
	defer late.Close()
	if line, err := readLine(bufio.NewReader(late)); err == nil && line != replyExiting {
		t.Errorf("a client that asked as the server exited was answered %q", line)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket is still there: %v", err)
	}
	errSpawned := errors.New("spawned")
	spawned := 0
	cl := Client{Root: root, Key: "k", Spawn: func(context.Context, string) error { spawned++; return errSpawned }}
	if _, err := cl.Mount(context.Background(), c); !errors.Is(err, errSpawned) || spawned != 1 {
		t.Errorf("Mount with no server: %v, %d servers started", err, spawned)
	}
}

// A shared server refuses, in one line and making nothing, a request it
// cannot read, of another protocol, with a relative path, or for another
// store.
func TestShared_BadRequests(t *testing.T) {
	root := storetest.Root(t)
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := serversDir(ServersDir(root)); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(ServersDir(root), "k-1.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	listening := make(chan struct{})
	rep := &Report{Then: func(string) { close(listening) }}
	go func() {
		done <- runShared(ctx, Config{Root: root, Listen: sock, MaxMounts: 2, Idle: time.Hour}, rep, nil)
	}()
	select {
	case <-listening:
	case err := <-done:
		t.Fatal(err)
	}
	other := t.TempDir()
	for _, tc := range []struct{ req, want string }{
		{"not json", "error: strata-mount: bad request"},
		{`{"protocol":1,"root":"` + root + `","dir":"/x","id":"0123456789ab"}`, "error: " + refusal},
		{`{"protocol":` + strconv.Itoa(Protocol) + `,"root":"` + root + `","dir":"x","id":"0123456789ab"}`, "error: strata-mount: the store and the mountpoint must be absolute paths"},
		{`{"protocol":` + strconv.Itoa(Protocol) + `,"root":"` + other + `","dir":"/x","id":"0123456789ab"}`, "error: this mount server serves the store " + root + ", not " + other},
	} {
		c, err := dialUnix(sock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(tc.req + "\n")); err != nil {
			t.Fatal(err)
		}
		line, err := readLine(bufio.NewReader(c))
		c.Close()
		if err != nil || !strings.HasPrefix(line, tc.want) {
			t.Errorf("request %s: %q, %v; want %q", tc.req, line, err, tc.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("server: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket after the server ended: %v", err)
	}
}
