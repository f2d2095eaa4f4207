package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/internal/mountserver"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// askEnv makes the test binary connect to the socket it names, send the
// request in askRequestEnv and print every line the server answers: a
// client of a shared server that is not strata (another user's, another
// namespace's).
const (
	askEnv        = "STRATA_TEST_ASK"
	askRequestEnv = "STRATA_TEST_ASK_REQUEST"
	askSlowEnv    = "STRATA_TEST_ASK_SLOW" // a client slow to send its request
)

// ask is the test binary as askEnv's client.
func ask(sock, req string) int {
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Println("dial:", err)
		return 0
	}
	defer c.Close()
	if os.Getenv(askSlowEnv) != "" {
		time.Sleep(200 * time.Millisecond) // a slow client, not a synchronisation
	}
	if _, err := fmt.Fprintln(c, req); err != nil {
		fmt.Println("write:", err)
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		fmt.Println(sc.Text())
	}
	return 0
}

// sharedStore is a store with the demo image, strata installed with
// strata-mount beside it, and mounts -d served at most per to a server;
// every mount left and every server left is ended when the test ends.
func sharedStore(t *testing.T, per int) (root, strata, lean string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	t.Setenv(mountsPerServerEnv, strconv.Itoa(per))
	strata, lean = installWithServer(t)
	root = storetest.Root(t)
	loadDemo(t, root)
	t.Cleanup(func() { endServers(t, root) })
	return root, strata, lean
}

// endServers unmounts what is left of root's mounts and ends the shared
// servers still there (SIGTERM), waiting for them to exit.
func endServers(t *testing.T, root string) {
	t.Helper()
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Error(err)
		return
	}
	if recs, err := s.Mounts(); err == nil {
		for _, r := range recs {
			if _, ok := mountedAt(t, r.Dir); ok {
				if r := runStrata(t, root, "", "umount", "-l", r.Dir); r.err != nil {
					t.Errorf("cleanup umount: %v", r.err)
				}
			}
		}
	}
	for _, pid := range serverPids(t, root) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		waitExit(t, pid)
	}
}

// serverPids are the pids of root's shared servers, as their sockets'
// peers say.
func serverPids(t *testing.T, root string) []int {
	t.Helper()
	socks, _ := filepath.Glob(filepath.Join(mountserver.ServersDir(root), "*.sock"))
	var pids []int
	for _, s := range socks {
		c, err := net.Dial("unix", s)
		if err != nil {
			continue
		}
		raw, _ := c.(*net.UnixConn).SyscallConn()
		_ = raw.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				pids = append(pids, int(cred.Pid))
			}
		})
		c.Close()
	}
	return pids
}

// waitExit waits (up to a minute) for process pid to exit.
func waitExit(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone
	}
	defer unix.Close(fd)
	if n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 60_000); err != nil || n == 0 {
		t.Errorf("server %d has not exited: %v", pid, err)
	}
}

// mountDirs makes n empty mountpoints.
func mountDirs(t *testing.T, n int) []string {
	t.Helper()
	base := t.TempDir()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(base, strconv.Itoa(i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

// leasePids maps each mount ID to the pid its lease names.
func leasePids(t *testing.T, root string) map[string]int {
	t.Helper()
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range recs {
		out[r.ID] = r.PID
	}
	return out
}

// Many mount -d of one image at once, with a write in each that none of
// the others sees, are served by no more than ceil(N/K) processes, as
// "strata mounts" says; they unmount in any order, each umount returning
// with its top layer gone, and the servers exit after their last. K=1
// serves each mount in a process of its own, as before.
func TestMount_Shared_ManyMounts(t *testing.T) {
	for _, tc := range []struct{ n, per int }{{7, 3}, {3, 1}} {
		t.Run(fmt.Sprintf("N=%d K=%d", tc.n, tc.per), func(t *testing.T) {
			root, strata, lean := sharedStore(t, tc.per)
			dirs := mountDirs(t, tc.n)
			ids := make([]string, tc.n)
			errs := make([]error, tc.n)
			var wg sync.WaitGroup
			for i := range dirs {
				wg.Go(func() { ids[i], errs[i] = mountD(strata, root, "demo", dirs[i]) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("mount -d %s: %v: %s", dirs[i], err, ids[i])
				}
			}
			for i, d := range dirs {
				if err := os.WriteFile(filepath.Join(d, "etc", "mine"), []byte(strconv.Itoa(i)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for i, d := range dirs {
				if b, err := os.ReadFile(filepath.Join(d, "etc", "mine")); err != nil || string(b) != strconv.Itoa(i) {
					t.Errorf("%s/etc/mine: %q, %v; want its own write %d", d, b, err, i)
				}
			}
			pids := leasePids(t, root)
			servers := map[int]int{}
			for _, id := range ids {
				pid := pids[id]
				servers[pid]++
				if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); exe != lean {
					t.Errorf("mount %s is served by %s, want %s", id, exe, lean)
				}
			}
			if want := (tc.n + tc.per - 1) / tc.per; len(servers) > want || len(servers) < 1 {
				t.Errorf("%d mounts with at most %d a server are served by %d processes %v, want at most %d", tc.n, tc.per, len(servers), servers, want)
			}
			for pid, n := range servers {
				if n > tc.per {
					t.Errorf("server %d serves %d mounts, more than %d", pid, n, tc.per)
				}
			}
			// strata mounts shows them all running, by those pids.
			_, rows := tableRows(t, mustRun(t, root, "mounts", "--format", "table {{.ID}}\t{{.PID}}\t{{.Status}}"))
			if len(rows) != tc.n {
				t.Fatalf("mounts: %v", rows)
			}
			for _, r := range rows {
				if r[2] != "running" || r[1] != strconv.Itoa(pids[r[0]]) {
					t.Errorf("mounts row %v, want running by %d", r, pids[r[0]])
				}
			}
			seed := rand.Uint64()
			t.Logf("unmount order seed %d", seed)
			order := rand.New(rand.NewPCG(seed, 0)).Perm(tc.n)
			s, err := layerstore.Open(root, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range order {
				mustRun(t, root, "umount", dirs[i])
				if _, err := os.Stat(s.MountDir(ids[i])); !os.IsNotExist(err) {
					t.Errorf("umount of %s returned with its mount directory there: %v", dirs[i], err)
				}
				if _, ok := mountedAt(t, dirs[i]); ok {
					t.Errorf("%s still mounted", dirs[i])
				}
				for j, d := range dirs { // the others work on
					if _, err := os.Stat(filepath.Join(d, "etc", "mine")); (err == nil) != (mountedAt2(t, d)) {
						t.Errorf("after umount of %d, mount %d: %v", i, j, err)
					}
				}
			}
			for pid := range servers {
				waitExit(t, pid)
			}
			if left, _ := filepath.Glob(filepath.Join(mountserver.ServersDir(root), "*-*")); len(left) != 0 {
				t.Errorf("sockets or logs left after the servers exited: %v", left)
			}
		})
	}
}

// mountedAt2 is mountedAt's second result.
func mountedAt2(t *testing.T, dir string) bool {
	_, ok := mountedAt(t, dir)
	return ok
}

// A kill -9 of one shared server takes down only its own mounts: the
// other server's keep working, "strata mounts" shows the killed one's as
// no longer running, "strata umount" cleans them up, the next mount -d
// starts a new server in the dead one's place, and the store checks clean.
func TestMount_Shared_KillServer(t *testing.T) {
	root, strata, _ := sharedStore(t, 2)
	dirs := mountDirs(t, 5)
	ids := make([]string, 4)
	for i := range ids {
		id, err := mountD(strata, root, "demo", dirs[i])
		if err != nil {
			t.Fatalf("mount -d: %v: %s", err, id)
		}
		ids[i] = id
	}
	pids := leasePids(t, root)
	victim := pids[ids[0]]
	if pids[ids[1]] != victim || pids[ids[2]] == victim || pids[ids[3]] != pids[ids[2]] {
		t.Fatalf("servers of the four mounts: %v %v %v %v, want two pairs", pids[ids[0]], pids[ids[1]], pids[ids[2]], pids[ids[3]])
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, victim)
	for i, d := range dirs[:4] {
		err := os.WriteFile(filepath.Join(d, "etc", "after"), []byte("x"), 0o644)
		if alive := i >= 2; alive != (err == nil) {
			t.Errorf("write into mount %d after the kill: %v (its server alive: %v)", i, err, alive)
		}
	}
	_, rows := tableRows(t, mustRun(t, root, "mounts", "--format", "table {{.ID}}\t{{.Status}}"))
	for _, r := range rows {
		dead := r[0] == ids[0] || r[0] == ids[1]
		if dead != (r[1] == string(session.Stale) || r[1] == string(session.Dead)) || !dead && r[1] != string(session.Running) {
			t.Errorf("mounts row %v after the kill of %d", r, victim)
		}
	}
	for _, d := range dirs[:2] {
		mustRun(t, root, "umount", d)
		if _, ok := mountedAt(t, d); ok {
			t.Errorf("%s still mounted", d)
		}
	}
	// The survivor has no room: a new server takes the next mount, and
	// the dead one's socket and (empty) log are gone, as are all but the
	// newest 8 of the logs that crashed servers left.
	socks, _ := filepath.Glob(filepath.Join(mountserver.ServersDir(root), "*.sock"))
	var victimLog string
	for _, s := range socks {
		if c, err := net.Dial("unix", s); err != nil {
			victimLog = mountserver.LogOf(s)
		} else {
			c.Close()
		}
	}
	if b, err := os.ReadFile(victimLog); err != nil || len(b) != 0 {
		t.Fatalf("the killed server's log %s: %q, %v", victimLog, b, err)
	}
	key, _, _ := strings.Cut(filepath.Base(victimLog), "-")
	var crashed []string
	for i := range 10 {
		p := filepath.Join(mountserver.ServersDir(root), fmt.Sprintf("%s-crashed%d.log", key, i))
		if err := os.WriteFile(p, []byte("panic: a crash\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(time.Duration(i-100) * time.Second)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		crashed = append(crashed, p)
	}
	id, err := mountD(strata, root, "demo", dirs[4])
	if err != nil {
		t.Fatalf("mount -d after the kill: %v: %s", err, id)
	}
	if pid := leasePids(t, root)[id]; pid == victim || pid == pids[ids[2]] {
		t.Errorf("the new mount is served by %d", pid)
	}
	if got := len(serverPids(t, root)); got != 2 {
		t.Errorf("%d servers answer, want 2", got)
	}
	if socks, _ := filepath.Glob(filepath.Join(mountserver.ServersDir(root), "*.sock")); len(socks) != 2 {
		t.Errorf("sockets: %v, want the two live servers'", socks)
	}
	if _, err := os.Lstat(victimLog); !os.IsNotExist(err) {
		t.Errorf("the killed server's empty log: %v, want it gone", err)
	}
	for i, p := range crashed {
		if _, err := os.Lstat(p); (err == nil) != (i >= 2) {
			t.Errorf("crashed server's log %d of 10 (oldest first): %v", i, err)
		}
	}
	for _, d := range dirs[2:] {
		mustRun(t, root, "umount", d)
	}
	if out := mustRun(t, root, "mounts", "-q"); out != "" {
		t.Errorf("mounts after the umounts: %q", out)
	}
}

// askAs runs the test binary as askEnv's client of sock with the request
// for a read-only mount of demo on dir, in cmd's place (prefix: a command
// that runs it, e.g. unshare), as uid if not -1.
func askAs(t *testing.T, sock, root, dir string, uid int, prefix ...string) string {
	t.Helper()
	self := askBinary(t)
	req := fmt.Sprintf(`{"protocol":%d,"root":%q,"ref":"demo","dir":%q,"id":"0123456789ab","flags":{"read-only":true}}`, mountserver.Protocol, root, dir)
	args := append(append([]string{}, prefix...), self)
	c := exec.Command(args[0], args[1:]...)
	c.Env = append(os.Environ(), askEnv+"="+sock, askRequestEnv+"="+req)
	if uid >= 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// askChrooted runs the test binary as askEnv's client of sock from a
// chroot that holds it, the libraries ldd says it loads, and a link to
// sock.
func askChrooted(t *testing.T, sock, root, dir string) string {
	t.Helper()
	jail := t.TempDir()
	self := askBinary(t)
	out, err := exec.Command("ldd", self).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", self, err)
	}
	files := []string{self}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(jail, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(jail, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(sock, filepath.Join(jail, "s.sock")); err != nil {
		t.Fatal(err)
	}
	req := fmt.Sprintf(`{"protocol":%d,"root":%q,"ref":"demo","dir":%q,"id":"0123456789ab","flags":{"read-only":true}}`, mountserver.Protocol, root, dir)
	c := exec.Command(self)
	c.Env = []string{askEnv + "=/s.sock", askRequestEnv + "=" + req}
	c.SysProcAttr = &syscall.SysProcAttr{Chroot: jail}
	c.Dir = "/"
	b, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("the client in a chroot: %v: %s", err, b)
	}
	return strings.TrimSpace(string(b))
}

// askBinary is a copy of this test binary that any user may run (the
// build's directory is its builder's alone), in a directory any user may
// enter.
func askBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strata-ask-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "strata.test")
	installCopy(t, p)
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A shared server serves only callers of its own user and mount namespace:
// a client of another uid (the socket made reachable to it on purpose) and
// one in another mount namespace are refused and nothing is mounted; a
// "strata mount -d" in another mount namespace gets a server of its own.
func TestMount_Shared_Peers(t *testing.T) {
	root, strata, _ := sharedStore(t, 16)
	dirs := mountDirs(t, 3)
	id, err := mountD(strata, root, "demo", dirs[0])
	if err != nil {
		t.Fatalf("mount -d: %v: %s", err, id)
	}
	pid := leasePids(t, root)[id]
	socks, _ := filepath.Glob(filepath.Join(mountserver.ServersDir(root), "*.sock"))
	if len(socks) != 1 {
		t.Fatalf("sockets: %v", socks)
	}
	// Another uid: the servers' directory (0700) keeps it out; past that,
	// the server refuses it by SO_PEERCRED.
	link := filepath.Join(filepath.Dir(askBinary(t)), "s.sock")
	if err := os.Link(socks[0], link); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(link, 0o666); err != nil {
		t.Fatal(err)
	}
	// A refusal comes after the request, to a slow client too (it met
	// EPIPE as it sent it: "ask another"), and is final ("error: ").
	for _, slow := range []string{"", "1"} {
		t.Setenv(askSlowEnv, slow)
		if out := askAs(t, link, root, dirs[1], 65534); out != "error: refused by the mount server: uid 65534 may not use the mount server of uid 0" {
			t.Errorf("a client of uid 65534 (slow %q): %q", slow, out)
		}
	}
	t.Setenv(askSlowEnv, "")
	if out := askAs(t, socks[0], root, dirs[1], 65534); !strings.Contains(out, "permission denied") {
		t.Errorf("a client of uid 65534 through the servers' directory: %q", out)
	}
	if err := os.Chmod(link, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare")
	}
	if out := askAs(t, socks[0], root, dirs[1], -1, "unshare", "-m", "--propagation", "private"); !strings.Contains(out, "is in another mount namespace than this mount server") {
		t.Errorf("a client in another mount namespace: %q", out)
	}
	if _, ok := mountedAt(t, dirs[1]); ok {
		t.Errorf("a refused client's mount is there")
	}
	// Another root directory (chroot): the mount would not be where it
	// asked. The client is the test binary with what ldd says it loads.
	if out := askChrooted(t, socks[0], root, dirs[1]); !strings.Contains(out, "has another root directory than this mount server") {
		t.Errorf("a client in a chroot: %q", out)
	}
	if n := len(leasePids(t, root)); n != 1 {
		t.Errorf("%d leases after the refusals, want 1", n)
	}
	// strata itself in another mount namespace: a server of its own
	// there, and the mount is not seen here.
	c := exec.Command("unshare", "-m", "--propagation", "private", strata, "--root", root, "mount", "-d", "demo", dirs[2])
	c.Env = append(os.Environ(), cliEnv+"=1")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("unshare -m strata mount -d: %v: %s", err, out)
	}
	other := leasePids(t, root)[strings.TrimSpace(string(out))]
	if other == 0 || other == pid {
		t.Fatalf("the mount in another namespace is served by %d (this namespace's server: %d)", other, pid)
	}
	nsOf := func(pid int) string { s, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); return s }
	if nsOf(other) == nsOf(os.Getpid()) {
		t.Errorf("the other namespace's server %d is in this namespace (%s)", other, nsOf(other))
	}
	if _, ok := mountedAt(t, dirs[2]); ok {
		t.Errorf("the other namespace's mount is seen here")
	}
	u := exec.Command("nsenter", "-t", strconv.Itoa(other), "-m", strata, "--root", root, "umount", dirs[2])
	u.Env = append(os.Environ(), cliEnv+"=1")
	if out, err := u.CombinedOutput(); err != nil {
		t.Errorf("umount in the other namespace: %v: %s", err, out)
	}
	waitExit(t, other)
	mustRun(t, root, "umount", dirs[0])
}

// A server that exits for want of mounts while a mount -d connects is
// asked again or replaced, never an error: mount and unmount one after the
// other with servers that exit at once.
func TestMount_Shared_ExitRace(t *testing.T) {
	root, strata, _ := sharedStore(t, 16)
	t.Setenv(serverIdleEnv, "1ms")
	dirs := mountDirs(t, 1)
	for i := range 20 {
		id, err := mountD(strata, root, "demo", dirs[0])
		if err != nil {
			t.Fatalf("round %d: mount -d: %v: %s", i, err, id)
		}
		mustRun(t, root, "umount", dirs[0])
	}
}

// Ctrl-C of mount -d while its server waits for the store leaves no
// mount behind: the server gives it up once it has the store, and mount
// -d says it was interrupted. For a shared server and one of its own.
func TestMount_Detached_Interrupted(t *testing.T) {
	for _, per := range []int{16, 1} {
		t.Run("K="+strconv.Itoa(per), func(t *testing.T) {
			root, strata, _ := sharedStore(t, per)
			t.Setenv(serverIdleEnv, "1m")
			dirs := mountDirs(t, 2)
			if per > 1 { // a server up and waiting
				mustRun(t, root, "umount", mustMountD(t, strata, root, dirs[1]))
			}
			db, err := os.OpenFile(filepath.Join(root, "meta.db"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := unix.Flock(int(db.Fd()), unix.LOCK_EX); err != nil {
				t.Fatal(err)
			}
			c := exec.Command(strata, "--root", root, "mount", "-d", "demo", dirs[0])
			c.Env = append(os.Environ(), cliEnv+"=1")
			var out strings.Builder
			c.Stdout, c.Stderr = &out, &out
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			// A process other than this one has the store's meta.db open
			// once the server has the request and waits for the lock
			// (mount -d, which opens nothing of the store, catches
			// Ctrl-C by then).
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if pid := holderOf(filepath.Join(root, "meta.db"), os.Getpid()); pid != 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no server ever waited for the store")
				}
			}
			if err := c.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			unix.Flock(int(db.Fd()), unix.LOCK_UN)
			err = c.Wait()
			if err == nil || !strings.Contains(out.String(), "interrupted") {
				t.Errorf("mount -d interrupted: %v, %q", err, out.String())
			}
			if _, ok := mountedAt(t, dirs[0]); ok {
				t.Errorf("%s is mounted after an interrupted mount -d", dirs[0])
			}
			if out := mustRun(t, root, "mounts", "-q"); out != "" {
				t.Errorf("mounts after an interrupted mount -d: %q", out)
			}
		})
	}
}

// holderOf is a process other than not that has path open, or 0.
func holderOf(path string, not int) int {
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == path {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			if pid != not {
				return pid
			}
		}
	}
	return 0
}

// mustMountD is mount -d of demo on dir, which it returns.
func mustMountD(t *testing.T, strata, root, dir string) string {
	t.Helper()
	if id, err := mountD(strata, root, "demo", dir); err != nil {
		t.Fatalf("mount -d: %v: %s", err, id)
	}
	return dir
}

// SIGTERM to a shared server unmounts every mount it serves; a mount in
// use stays until it is let go, its busy sentence in its own server.log,
// and the server exits after its last.
func TestMount_Shared_Terminate(t *testing.T) {
	root, strata, _ := sharedStore(t, 16)
	dirs := mountDirs(t, 2)
	var ids []string
	for _, d := range dirs {
		id, err := mountD(strata, root, "demo", d)
		if err != nil {
			t.Fatalf("mount -d: %v: %s", err, id)
		}
		ids = append(ids, id)
	}
	pid := leasePids(t, root)[ids[0]]
	if leasePids(t, root)[ids[1]] != pid {
		t.Fatalf("two mounts, two servers")
	}
	sleeper := exec.Command("sleep", "600")
	sleeper.Dir = filepath.Join(dirs[1], "etc")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(layerstore.MountDirIn(root, ids[1]), "server.log")
	want := "strata: " + dirs[1] + " is in use, so it stays mounted until nothing uses it: used by sleep (pid " + strconv.Itoa(sleeper.Process.Pid)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(logPath)
		if !mountedAt2(t, dirs[0]) && strings.Contains(string(b), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGTERM: %s mounted: %v; %s: %q", dirs[0], mountedAt2(t, dirs[0]), logPath, b)
		}
	}
	if !mountedAt2(t, dirs[1]) {
		t.Errorf("the busy mount is gone while in use")
	}
	if _, err := os.Stat(layerstore.MountDirIn(root, ids[0])); !os.IsNotExist(err) {
		t.Errorf("the free mount's directory after SIGTERM: %v", err)
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	waitExit(t, pid)
	if mountedAt2(t, dirs[1]) {
		t.Errorf("%s still mounted after its server exited", dirs[1])
	}
	if out := mustRun(t, root, "mounts", "-q"); out != "" {
		t.Errorf("mounts after the server exited: %q", out)
	}
}

// A shared server makes no mount for a caller of less privilege than its
// own: root stripped of its capabilities (setpriv) and root of a user
// namespace of its own (unshare -U) are refused at the socket, and their
// "strata mount -d --suid --dev --force" meets a server of their own
// (another key), which cannot mount for them either: it fails, and
// nothing is mounted, as with a server for each mount.
func TestMount_Shared_LessPrivileged(t *testing.T) {
	root, strata, _ := sharedStore(t, 16)
	for _, tool := range []string{"setpriv", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("no " + tool + " (util-linux)")
		}
	}
	dirs := mountDirs(t, 2)
	mustMountD(t, strata, root, dirs[0])
	socks, _ := filepath.Glob(filepath.Join(mountserver.ServersDir(root), "*.sock"))
	if len(socks) != 1 {
		t.Fatalf("sockets: %v", socks)
	}
	if err := os.WriteFile(filepath.Join(dirs[1], "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		prefix []string
		want   string
	}{
		{"setpriv", []string{"setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"}, "has other capabilities"},
		{"unshare -U", []string{"unshare", "-U", "--map-user=0", "--map-group=0", "--"}, "is in another user namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out := askAs(t, socks[0], root, dirs[1], -1, tc.prefix...); !strings.HasPrefix(out, "other: refused by the mount server") || !strings.Contains(out, tc.want) {
				t.Errorf("%s: a client at the socket: %q", tc.name, out)
			}
			args := append(append([]string{}, tc.prefix...), strata, "--root", root, "mount", "-d", "--force", "--suid", "--dev", "demo", dirs[1])
			c := exec.Command(args[0], args[1:]...)
			c.Env = append(os.Environ(), cliEnv+"=1")
			out, err := c.CombinedOutput()
			if err == nil {
				t.Errorf("%s strata mount -d --suid --dev --force: a mount for a caller that may not mount: %s", tc.name, out)
				runStrata(t, root, "", "umount", dirs[1])
			}
			if _, ok := mountedAt(t, dirs[1]); ok {
				t.Errorf("%s is mounted", dirs[1])
			}
			if n := len(leasePids(t, root)); n != 1 {
				t.Errorf("%d leases, want 1", n)
			}
		})
	}
	mustRun(t, root, "umount", dirs[0])
}

// A kill -9 of a server while strata umount waits for it, 0-20 ms after
// the umount began (between the server's deletion of the lease and of the
// top layer, some of the time), leaves no top layer behind once the
// umount has returned: the umount takes what the dead server left.
func TestUmount_Shared_ServerKilled(t *testing.T) {
	for _, per := range []int{16, 1} {
		t.Run("K="+strconv.Itoa(per), func(t *testing.T) {
			root, strata, _ := sharedStore(t, per)
			dirs := mountDirs(t, 1)
			blob := make([]byte, 1<<20)
			for i := range 30 {
				id, err := mountD(strata, root, "demo", dirs[0])
				if err != nil {
					t.Fatalf("round %d: mount -d: %v: %s", i, err, id)
				}
				pid := leasePids(t, root)[id]
				if err := os.WriteFile(filepath.Join(dirs[0], "blob"), blob, 0o644); err != nil {
					t.Fatal(err)
				}
				u := exec.Command(strata, "--root", root, "umount", dirs[0])
				u.Env = append(os.Environ(), cliEnv+"=1")
				var out strings.Builder
				u.Stdout, u.Stderr = &out, &out
				if err := u.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(rand.IntN(20_000)) * time.Microsecond) // where in the umount the kill lands
				_ = syscall.Kill(pid, syscall.SIGKILL)
				err = u.Wait()
				waitExit(t, pid)
				if err != nil {
					t.Logf("round %d: umount: %v: %s", i, err, out.String())
					mustRun(t, root, "umount", id) // the dead server's lease
				}
				if _, err := os.Lstat(layerstore.MountDirIn(root, id)); !os.IsNotExist(err) {
					t.Fatalf("round %d: after umount (%s) the mount's directory is left: %v", i, out.String(), err)
				}
			}
			storetest.CheckRoot(t, root)
		})
	}
}

// A shared server whose release of an ended mount fails (its wait for the
// store's lock timed out) tries again until the lease is gone, rather
// than leave a lease naming it, "starting" for good, which umount and gc
// wait on: an umount(8) of the mount while the store is locked for longer
// than the server's lock timeout.
func TestMount_Shared_ReleaseRetried(t *testing.T) {
	root, strata, _ := sharedStore(t, 16)
	dirs := mountDirs(t, 2)
	for i, d := range dirs {
		if id, err := mountD(strata, root, "--lock-timeout", "2", "demo", d); err != nil {
			t.Fatalf("mount -d %d: %v: %s", i, err, id)
		}
	}
	db, err := os.OpenFile(filepath.Join(root, "meta.db"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := unix.Flock(int(db.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(dirs[1], 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // longer than the server's lock timeout: its RemoveMount fails
	unix.Flock(int(db.Fd()), unix.LOCK_UN)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if len(leasePids(t, root)) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lease of the unmounted mount is still there 30 s after the store was let go: %s", mustRun(t, root, "mounts"))
		}
	}
	mustRun(t, root, "umount", dirs[0])
}

// Many strata umounts at once of a shared server's mounts all return,
// each with its mount gone: the umounts' waits for their servers did not
// starve the servers' deletions of the leases (every umount read the
// lease whenever any mount's directory went).
func TestUmount_Shared_Parallel(t *testing.T) {
	const n = 64
	root, strata, _ := sharedStore(t, 16)
	dirs := mountDirs(t, n)
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range dirs {
		wg.Go(func() { ids[i], errs[i] = mountD(strata, root, "demo", dirs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("mount -d %s: %v: %s", dirs[i], err, ids[i])
		}
	}
	blob := make([]byte, 1<<20)
	for _, d := range dirs { // a top layer to delete
		if err := os.WriteFile(filepath.Join(d, "blob"), blob, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outs := make([]string, n)
	for i := range dirs {
		wg.Go(func() {
			c := exec.Command(strata, "--root", root, "umount", dirs[i])
			c.Env = append(os.Environ(), cliEnv+"=1")
			done := make(chan struct{})
			defer close(done)
			go func() {
				select {
				case <-done:
				case <-time.After(2 * time.Minute): // a hang, not slowness
					_ = c.Process.Kill()
				}
			}()
			var b []byte
			b, errs[i] = c.CombinedOutput()
			outs[i] = string(b)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("umount %s: %v: %s", dirs[i], err, outs[i])
		}
		if _, err := os.Lstat(layerstore.MountDirIn(root, ids[i])); !os.IsNotExist(err) {
			t.Errorf("umount of %s returned with its mount directory there: %v", dirs[i], err)
		}
	}
	if out := mustRun(t, root, "mounts", "-q"); out != "" {
		t.Errorf("mounts after the umounts: %q", out)
	}
}

// startStrata starts strata with args, its output in out; a hang is
// killed after a minute, so that the test fails rather than waits.
func startStrata(t *testing.T, strata string, out *strings.Builder, args ...string) (*exec.Cmd, <-chan error) {
	t.Helper()
	c := exec.Command(strata, args...)
	c.Env = append(os.Environ(), cliEnv+"=1")
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	res := make(chan error, 1)
	go func() {
		select {
		case err := <-done:
			res <- err
		case <-time.After(time.Minute):
			_ = c.Process.Kill()
			<-done
			res <- fmt.Errorf("still running after a minute: killed")
		}
	}()
	return c, res
}

// hasSocket reports whether process pid has a socket open.
func hasSocket(pid int) bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if l, _ := os.Readlink(fd); strings.HasPrefix(l, "socket:") {
			return true
		}
	}
	return false
}

// A shared server that does not answer (SIGSTOP) neither hangs mount -d
// nor keeps Ctrl-C from ending it: Ctrl-C while it waits for the answer
// ends it, and a mount -d asks another server (started for it) a few
// seconds on.
func TestMount_Shared_StoppedServer(t *testing.T) {
	root, strata, _ := sharedStore(t, 16)
	dirs := mountDirs(t, 3)
	mustMountD(t, strata, root, dirs[0])
	pid := serverPids(t, root)[0]
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })

	var out strings.Builder
	c, res := startStrata(t, strata, &out, "--root", root, "mount", "-d", "demo", dirs[2])
	for deadline := time.Now().Add(30 * time.Second); !hasSocket(c.Process.Pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("mount -d never connected to the server")
		}
	}
	if err := c.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err == nil || !strings.Contains(out.String(), "interrupted") {
		t.Errorf("Ctrl-C of mount -d asking a stopped server: %v: %q", err, out.String())
	}

	var out2 strings.Builder
	_, res2 := startStrata(t, strata, &out2, "--root", root, "mount", "-d", "demo", dirs[1])
	if err := <-res2; err != nil {
		t.Fatalf("mount -d beside a stopped server: %v: %s", err, out2.String())
	}
	if other := leasePids(t, root)[strings.TrimSpace(out2.String())]; other == pid || other == 0 {
		t.Errorf("the mount beside a stopped server is served by %d (the stopped one: %d)", other, pid)
	}
	mustRun(t, root, "umount", dirs[1])
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	mustRun(t, root, "umount", dirs[0])
	if _, ok := mountedAt(t, dirs[2]); ok {
		t.Errorf("the interrupted mount is there")
	}
	if out := mustRun(t, root, "mounts", "-q"); out != "" {
		t.Errorf("mounts at the end: %q", out)
	}
}

// A shared server takes from the mount -d that started it neither its
// working directory (which would stay busy while the server lives) nor
// its environment beyond what it reads, nor its --lock-timeout for
// later mounts: each mount waits for the store as its own mount -d says.
func TestMount_Shared_NotTheFirstCaller(t *testing.T) {
	root, strata, _ := sharedStore(t, 16)
	dirs := mountDirs(t, 2)
	c := exec.Command(strata, "--root", root, "--lock-timeout", "1", "mount", "-d", "demo", dirs[0])
	c.Dir = t.TempDir()
	c.Env = append(os.Environ(), cliEnv+"=1", "MOUNTDFIX_UNRELATED=1")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("mount -d: %v: %s", err, out)
	}
	pid := serverPids(t, root)[0]
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != "/" {
		t.Errorf("the server's working directory: %q, %v; want /", cwd, err)
	}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err != nil || strings.Contains(string(env), "MOUNTDFIX_UNRELATED") {
		t.Errorf("the server's environment has its first caller's: %q, %v", env, err)
	}
	db, err := os.OpenFile(filepath.Join(root, "meta.db"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := unix.Flock(int(db.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	_, res := startStrata(t, strata, &out, "--root", root, "--lock-timeout", "30", "mount", "-d", "demo", dirs[1])
	time.Sleep(3 * time.Second) // the store locked longer than the first caller's timeout
	unix.Flock(int(db.Fd()), unix.LOCK_UN)
	if err := <-res; err != nil {
		t.Errorf("mount -d --lock-timeout 30 with the store locked for 3 s: %v: %s", err, out.String())
	}
	if leasePids(t, root)[strings.TrimSpace(out.String())] != pid {
		t.Errorf("the second mount is not served by the first's server %d", pid)
	}
	for _, d := range dirs {
		if _, ok := mountedAt(t, d); ok {
			mustRun(t, root, "umount", d)
		}
	}
}
