package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/runctest"
	"github.com/strata-dev/strata/internal/storetest"
)

// containerStore is a store with the demo image whose containers are all
// removed when the test ends, before the store is checked.
func containerStore(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, runc")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("runc is needed (.ci/run installs it): %v", err)
	}
	// runc's state under this test's own root: what it leaves there fails
	// it (runctest), and a kill of this process leaves nothing the next
	// run does not find.
	t.Setenv(runcRootEnv, runctest.Root(t))
	root := storetest.Root(t)
	loadDemo(t, root)
	t.Cleanup(func() {
		ids := strings.Fields(mustRun(t, root, "ps", "-a", "-q", "--no-trunc"))
		if len(ids) > 0 {
			if r := runStrata(t, root, "", append([]string{"rm", "-f"}, ids...)...); r.err != nil {
				t.Errorf("cleanup: rm -f: %v\n%s", r.err, r.stderr)
			}
		}
	})
	return root
}

func TestRun_AttachedKeepsItsLayerUntilRm(t *testing.T) {
	root := containerStore(t)
	r := runStrata(t, root, "", "run", "--name", "kk", "demo", "-c", "cat /f 2>/dev/null || echo first; echo again > /f; exit 3")
	if r.stdout != "first\n" || r.code != 3 || r.stderr != "" {
		t.Errorf("run: %q %q, exit %d", r.stdout, r.stderr, r.code)
	}
	r = runStrata(t, root, "", "start", "-a", "kk")
	if r.stdout != "again\n" || r.code != 3 {
		t.Errorf("start -a: %q %q, exit %d (want the first run's write)", r.stdout, r.stderr, r.code)
	}
	header, rows := tableRows(t, mustRun(t, root, "ps", "-a"))
	if strings.Join(header, "|") != "CONTAINER ID|IMAGE|COMMAND|CREATED|STATUS|PORTS|NAMES" || len(rows) != 1 {
		t.Fatalf("ps -a: %v %v", header, rows)
	}
	if got := mustRun(t, root, "ps", "-a", "--format", "{{.Names}} {{.State}} {{.Image}} {{.Command}}"); got != `kk exited demo "/bin/sh -c cat /f 2…"`+"\n" {
		t.Errorf("ps --format: %q", got)
	}
	if got := mustRun(t, root, "ps"); strings.Count(got, "\n") != 1 {
		t.Errorf("ps shows a stopped container:\n%s", got)
	}
	if got := mustRun(t, root, "logs", "kk"); got != "first\nagain\n" {
		t.Errorf("logs: %q", got)
	}
	if got := mustRun(t, root, "diff", "kk"); got != "A /f\n" {
		t.Errorf("diff of the container: %q (the runtime's mountpoints are no change)", got)
	}
	mustRun(t, root, "commit", "kk", "kk:committed")
	// The image runs the container's command (which exits 3), on its layer.
	if r := runStrata(t, root, "", "run", "--rm", "kk:committed"); r.stdout != "again\n" || r.code != 3 {
		t.Errorf("a container of the committed image: %q, exit %d", r.stdout, r.code)
	}
	mustRun(t, root, "rmi", "kk:committed")
	if got := mustRun(t, root, "rm", "kk"); got != "kk\n" {
		t.Errorf("rm printed %q", got)
	}
	if got := mustRun(t, root, "ps", "-a", "-q"); got != "" {
		t.Errorf("ps -a after rm: %q", got)
	}
	if got := mustRun(t, root, "mounts", "-q"); got != "" {
		t.Errorf("a lease outlived its container: %q", got)
	}
}

func TestRun_Options(t *testing.T) {
	root := containerStore(t)
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("# comment\nB=2\n\nC=from-file\n"), 0o644)
	cid := filepath.Join(t.TempDir(), "cid")
	r := runStrata(t, root, "", "run", "--rm", "--cidfile", cid, "-e", "A=1", "--env-file", envFile, "-e", "C=flag",
		"-w", "/tmp/work", "-u", "user", "-h", "box", "--entrypoint", "/bin/sh", "demo",
		"-c", `echo "$A $B $C $APP"; pwd; id -u; hostname`)
	if want := "1 2 flag demo\n/tmp/work\n1000\nbox\n"; r.stdout != want || r.code != 0 {
		t.Errorf("run: %q %q, exit %d; want %q", r.stdout, r.stderr, r.code, want)
	}
	if b, err := os.ReadFile(cid); err != nil || !regexp.MustCompile(`^[0-9a-f]{64}$`).Match(b) {
		t.Errorf("cidfile: %q %v", b, err)
	}
	if got := mustRun(t, root, "ps", "-a", "-q"); got != "" {
		t.Errorf("--rm left %q", got)
	}
	if got := mustRun(t, root, "run", "--rm", "--init", "demo", "-c", "cat /proc/1/comm"); got != "docker-init\n" {
		t.Errorf("--init: PID 1 is %q", got)
	}
	if r := runStrata(t, root, "", "run", "--rm", "--read-only", "demo", "-c", "touch /x"); r.code != 1 {
		t.Errorf("write on --read-only: exit %d %q", r.code, r.stderr)
	}
	if r := runStrata(t, root, "", "run", "--rm", "--network", "host", "demo", "-c", "ls /sys/class/net | grep -qv '^lo$'"); r.code != 0 {
		t.Errorf("--network host sees no interface but lo: exit %d %q", r.code, r.stderr)
	}
}

func TestRun_Errors(t *testing.T) {
	root := containerStore(t)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"nosuch"}, 125, "nosuch"},
		{[]string{"--entrypoint", "/etc/motd", "demo"}, 126, "permission denied"},
		{[]string{"--entrypoint", "nosuch", "demo"}, 127, "executable file not found"},
		{[]string{"-u", "nosuchuser", "demo"}, 125, "unable to find user nosuchuser"},
		{[]string{"--network", "bridge", "demo"}, 125, `network "bridge"`},
		{[]string{"--stop-signal", "NOPE", "demo"}, 125, "invalid signal"},
		{[]string{"--name", "-bad", "demo"}, 125, "invalid container name"},
		{[]string{"--env-file", "/no/such/file", "demo"}, 125, "/no/such/file"},
	} {
		r := runStrata(t, root, "", append([]string{"run", "--rm"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("run %v: exit %d, %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
		}
	}
	// The runtime's reason, once, in docker's words, and not in the logs;
	// run -d exits as run does.
	const notFound = `Error: OCI runtime create failed: runc run failed: unable to start container process: exec: "nosuch": executable file not found in $PATH: unknown` + "\n"
	if r := runStrata(t, root, "", "run", "--name", "nf", "--entrypoint", "nosuch", "demo"); r.code != 127 || r.stderr != notFound || r.stdout != "" {
		t.Errorf("run of a command not found: exit %d %q %q; want 127 %q", r.code, r.stdout, r.stderr, notFound)
	}
	if got := mustRun(t, root, "logs", "nf"); got != "" {
		t.Errorf("the runtime's error is in the container's log: %q", got)
	}
	if got := mustRun(t, root, "inspect", "-f", "{{.State.Error}}", "nf"); got != strings.TrimPrefix(notFound, "Error: ") {
		t.Errorf("State.Error: %q", got)
	}
	t.Setenv(cliEnv, "1") // the supervisor run -d starts is this test binary
	if r := runStrata(t, root, "", "run", "-d", "--name", "nfd", "--entrypoint", "nosuch", "demo"); r.code != 127 || r.stderr != notFound {
		t.Errorf("run -d of a command not found: exit %d %q", r.code, r.stderr)
	}
	mustRun(t, root, "rm", "nf", "nfd")
	mustRun(t, root, "create", "--name", "dup", "demo")
	if r := runStrata(t, root, "", "run", "--name", "dup", "demo"); r.code != 125 || !strings.Contains(r.stderr, `the container name "/dup" is already in use`) {
		t.Errorf("name in use: exit %d %q", r.code, r.stderr)
	}
	// Nothing left behind but the one created container and its lease.
	if got := mustRun(t, root, "ps", "-a", "--format", "{{.Names}} {{.Status}}"); got != "dup Created\n" {
		t.Errorf("ps -a after the failures: %q", got)
	}
	if got := strings.Fields(mustRun(t, root, "mounts", "-q")); len(got) != 1 {
		t.Errorf("leases after the failures: %q", got)
	}
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRun_DetachedLogsStopRestart(t *testing.T) {
	root := containerStore(t)
	t.Setenv(cliEnv, "1") // the supervisor run -d starts is this test binary
	id := strings.TrimSpace(mustRun(t, root, "run", "-d", "--name", "bg", "demo", "-c",
		"trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done"))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("run -d printed %q", id)
	}
	waitFor(t, "the container's first line", func() bool { return mustRun(t, root, "logs", "bg") == "up\n" })
	if got := mustRun(t, root, "ps", "--format", "{{.ID}} {{.State}}"); got != id[:12]+" running\n" {
		t.Errorf("ps: %q", got)
	}
	if r := runStrata(t, root, "", "rm", "bg"); r.code != 1 || !strings.Contains(r.stderr, "Stop the container before attempting removal") {
		t.Errorf("rm of a running container: exit %d %q", r.code, r.stderr)
	}
	if got := mustRun(t, root, "stop", "bg"); got != "bg\n" {
		t.Errorf("stop printed %q", got)
	}
	if got := mustRun(t, root, "ps", "-a", "--format", "{{.State}}"); got != "exited\n" {
		t.Errorf("after stop: %q", got)
	}
	if got := mustRun(t, root, "wait", "bg"); got != "0\n" {
		t.Errorf("wait: %q", got)
	}
	if got := mustRun(t, root, "logs", "-t", "--tail", "1", "bg"); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT[0-9:.]+Z bye\n$`).MatchString(got) {
		t.Errorf("logs -t --tail 1: %q", got)
	}
	mustRun(t, root, "restart", "bg")
	waitFor(t, "the restarted container", func() bool { return strings.Count(mustRun(t, root, "logs", "bg"), "up") == 2 })
	if got := mustRun(t, root, "kill", "-s", "KILL", "bg"); got != "bg\n" {
		t.Errorf("kill printed %q", got)
	}
	if got := mustRun(t, root, "wait", "bg"); got != "137\n" {
		t.Errorf("wait after kill: %q", got)
	}
	if r := runStrata(t, root, "", "kill", "bg"); r.code != 1 || !strings.Contains(r.stderr, "is not running") {
		t.Errorf("kill of a stopped container: exit %d %q", r.code, r.stderr)
	}
	mustRun(t, root, "rm", "bg")
}

func TestExec(t *testing.T) {
	root := containerStore(t)
	t.Setenv(cliEnv, "1")
	mustRun(t, root, "run", "-d", "--name", "ex", "demo", "-c", "echo up; while :; do sleep 0.05; done")
	waitFor(t, "the container", func() bool { return mustRun(t, root, "logs", "ex") == "up\n" })
	for _, tc := range []struct {
		args   []string
		stdin  string
		stdout string
		code   int
	}{
		{[]string{"ex", "sh", "-c", "exit 5"}, "", "", 5},
		{[]string{"-u", "user", "-w", "/tmp", "-e", "X=1", "ex", "sh", "-c", `id -u; pwd; echo "$X $APP $HOME"`}, "", "1000\n/tmp\n1 demo /home/user\n", 0},
		{[]string{"-i", "ex", "cat"}, "through stdin\n", "through stdin\n", 0},
		{[]string{"ex", "cat"}, "not without -i\n", "", 0},
		{[]string{"ex", "nosuch"}, "", "", 126},
		{[]string{"ex", "/etc/motd"}, "", "", 126},
		{[]string{"nosuch", "true"}, "", "", 1},
	} {
		r := runStrata(t, root, tc.stdin, append([]string{"exec"}, tc.args...)...)
		if r.stdout != tc.stdout || r.code != tc.code {
			t.Errorf("exec %v: %q %q, exit %d; want %q, exit %d", tc.args, r.stdout, r.stderr, r.code, tc.stdout, tc.code)
		}
	}
	const execNotFound = `Error: OCI runtime exec failed: exec failed: unable to start container process: exec: "nosuch": executable file not found in $PATH: unknown` + "\n"
	if r := runStrata(t, root, "", "exec", "ex", "nosuch"); r.stderr != execNotFound {
		t.Errorf("exec of a command not found: %q; want %q", r.stderr, execNotFound)
	}
	// The exec'd write lands in the container's layer.
	mustRun(t, root, "exec", "ex", "sh", "-c", "echo via-exec > /etc/exec")
	mustRun(t, root, "stop", "-t", "0", "ex")
	if r := runStrata(t, root, "", "exec", "ex", "true"); r.code != 1 || !strings.Contains(r.stderr, "is not running") {
		t.Errorf("exec in a stopped container: exit %d %q", r.code, r.stderr)
	}
	mustRun(t, root, "start", "ex")
	if got := mustRun(t, root, "exec", "ex", "cat", "/etc/exec"); got != "via-exec\n" {
		t.Errorf("after a restart: %q", got)
	}
	mustRun(t, root, "rm", "-f", "ex")
}

func TestContainer_InspectPrune(t *testing.T) {
	root := containerStore(t)
	id := strings.TrimSpace(mustRun(t, root, "create", "--name", "insp", "-e", "X=1", "-v", "/tmp:/host:ro", "--label", "a=b", "demo", "-c", "exit 4"))
	got := mustRun(t, root, "container", "inspect", "-f", "{{.Id}} {{.Name}} {{.State.Status}} {{.Path}} {{.Args}} {{.Config.Env}} {{.Config.Labels}} {{.HostConfig.Binds}} {{.GraphDriver.Name}}", "insp")
	want := id + " /insp created /bin/sh [-c exit 4] [X=1 PATH=/bin:/usr/bin:/sbin APP=demo] map[a:b org.example.fixture:demo] [/tmp:/host:ro] strata\n"
	if got != want {
		t.Errorf("inspect:\n%s\nwant:\n%s", got, want)
	}
	// docker's order of keys, not sorted ones.
	raw := mustRun(t, root, "container", "inspect", "insp")
	last := -1
	for _, k := range []string{"Id", "Created", "Path", "Args", "State", "Status", "Running", "Pid", "ExitCode", "StartedAt", "FinishedAt",
		"Image", "ResolvConfPath", "Name", "Driver", "HostConfig", "Binds", "NetworkMode", "GraphDriver", "Mounts", "Type", "Source", "Destination",
		"Config", "Hostname", "Env", "Cmd", "Entrypoint", "Labels", "NetworkSettings"} {
		i := strings.Index(raw[last+1:], `"`+k+`":`)
		if i < 0 {
			t.Errorf("inspect: %q missing or out of docker's order:\n%s", k, raw)
			break
		}
		last += 1 + i
	}
	if r := runStrata(t, root, "", "start", "-a", "insp"); r.code != 4 {
		t.Errorf("start -a: exit %d", r.code)
	}
	if got := mustRun(t, root, "container", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}", "insp"); got != "exited 4 false\n" {
		t.Errorf("inspect after the run: %q", got)
	}
	if got := mustRun(t, root, "inspect", "-f", "{{.Id}}", "insp", "demo"); got != id+"\n"+readDemoConfig(t).id+"\n" {
		t.Errorf("inspect of a container and an image: %q", got)
	}
	if r := runStrata(t, root, "", "image", "inspect", "insp"); r.code != 1 {
		t.Errorf("image inspect of a container: exit %d", r.code)
	}
	if r := runStrata(t, root, "", "container", "inspect", "nosuch"); r.code != 1 || r.stdout != "[]\n" || !strings.Contains(r.stderr, "No such container: nosuch") {
		t.Errorf("inspect nosuch: %q %q %d", r.stdout, r.stderr, r.code)
	}
	mustRun(t, root, "create", "--name", "other", "demo")
	out := mustRun(t, root, "container", "prune", "-f")
	if !strings.HasPrefix(out, "Deleted Containers:\n") || strings.Count(out, "\n") != 5 || !strings.Contains(out, id+"\n") {
		t.Errorf("container prune:\n%s", out)
	}
	if got := mustRun(t, root, "container", "ls", "-a", "-q"); got != "" {
		t.Errorf("after prune: %q", got)
	}
}

// TestRun_InteractiveTerminal: run -it on a terminal gives the container a
// terminal of its own, fed from strata's.
func TestRun_InteractiveTerminal(t *testing.T) {
	root := containerStore(t)
	ptmx, tty := openPTY(t)
	screen := make(chan string)
	go func() {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		screen <- b.String()
	}()
	// The container reads a line from its terminal, which strata feeds
	// from its own.
	ptmx.Write([]byte("typed\r")) // the line waits in the terminal until read
	cmd := newRootCmd()
	cmd.SetIn(tty)
	cmd.SetOut(tty)
	cmd.SetErr(tty)
	cmd.SetArgs([]string{"--root", root, "run", "-it", "--rm", "demo", "-c", `[ -t 0 ] && echo is-a-tty; read x; echo "got:$x"; exit 3`})
	err := cmd.Execute()
	// strata's copy of its terminal into the container's is still in a
	// read (the CLI exits here): a keystroke ends it, then the terminal
	// can close.
	ptmx.Write([]byte("\r"))
	tty.Close()
	out := <-screen
	if exitCode(err) != 3 {
		t.Errorf("run -it: %v (exit %d), want exit 3\n%q", err, exitCode(err), out)
	}
	if !strings.Contains(out, "is-a-tty") || !strings.Contains(out, "got:typed") {
		t.Errorf("run -it: the terminal showed %q", out)
	}
}

// TestRun_PublishedPort: a web server in a container on the private
// network answers on the host port -p published, on 127.0.0.1; a port
// already taken is refused, leaving nothing behind.
func TestRun_PublishedPort(t *testing.T) {
	root := containerStore(t)
	t.Setenv(cliEnv, "1")
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from a container\n"), 0o644)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	id := mustRun(t, root, "run", "-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:8080", port), "-v", www+":/www:ro",
		"demo", "-c", "exec /bin/busybox httpd -f -p 8080 -h /www")
	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", port)
	var body string
	waitFor(t, "the web server", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	})
	if body != "hello from a container\n" {
		t.Errorf("GET %s: %q", url, body)
	}
	if got := mustRun(t, root, "ps", "--format", "{{.Ports}}"); got != fmt.Sprintf("127.0.0.1:%d->8080/tcp\n", port) {
		t.Errorf("ps PORTS: %q", got)
	}
	r := runStrata(t, root, "", "run", "--rm", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "demo", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "already allocated") {
		t.Errorf("a taken port: exit %d %q", r.code, r.stderr)
	}
	if r := runStrata(t, root, "", "run", "--rm", "--network", "none", "-p", "80", "demo", "true"); r.code != 125 {
		t.Errorf("-p without the private network: exit %d %q", r.code, r.stderr)
	}
	mustRun(t, root, "rm", "-f", "web")
	// Other tests' containers may have theirs: only this one's must be gone.
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "strata-"+id[:12]) {
		t.Errorf("the container's network namespace is left: %s", out)
	}
}

// An image a container uses is not removed from under it: rmi says which
// container (docker's words); rmi -f only untags it, and the container
// still runs; prune -a keeps it.
func TestRmi_ImageOfAContainer(t *testing.T) {
	root := containerStore(t)
	id := strings.TrimSpace(mustRun(t, root, "create", "--name", "user", "demo", "-c", "echo still runs"))
	cfg := readDemoConfig(t)
	r := runStrata(t, root, "", "rmi", "demo")
	if want := fmt.Sprintf("Error: conflict: unable to remove repository reference \"demo\" (must force) - container %s is using its referenced image %s\n", id[:12], cfg.shortID()); r.code != 1 || r.stderr != want {
		t.Errorf("rmi demo: exit %d\n%q\nwant\n%q", r.code, r.stderr, want)
	}
	r = runStrata(t, root, "", "rmi", cfg.shortID())
	if want := fmt.Sprintf("Error: conflict: unable to delete %s (must be forced) - image is being used by stopped container %s\n", cfg.shortID(), id[:12]); r.code != 1 || r.stderr != want {
		t.Errorf("rmi ID: exit %d\n%q\nwant\n%q", r.code, r.stderr, want)
	}
	mustRun(t, root, "image", "prune", "-a", "-f")
	if got := mustRun(t, root, "rmi", "-f", "demo"); got != "Untagged: demo:latest\n" {
		t.Errorf("rmi -f of a container's image: %q", got)
	}
	if got := mustRun(t, root, "images", "-q"); got != cfg.shortID()+"\n" {
		t.Errorf("images after rmi -f: %q (the container's image stays, dangling)", got)
	}
	if got := mustRun(t, root, "start", "-a", "user"); got != "still runs\n" {
		t.Errorf("the container after rmi -f of its image: %q", got)
	}
	mustRun(t, root, "rm", "user")
	mustRun(t, root, "image", "prune", "-f")
	if got := mustRun(t, root, "images", "-a", "-q"); got != "" {
		t.Errorf("after the container went, prune: %q", got)
	}
}

// rmi by ID of an image with two tags that a running container uses is
// refused for the running container first, forced or not, as docker's
// checks come (running users before other repositories); the tags stay.
func TestRmi_ImageOfARunningContainer(t *testing.T) {
	root := containerStore(t)
	t.Setenv(cliEnv, "1") // the supervisor run -d starts is this test binary
	id := strings.TrimSpace(mustRun(t, root, "run", "-d", "--name", "up", "demo", "-c", "sleep 30"))
	t.Cleanup(func() { runStrata(t, root, "", "rm", "-f", "up") })
	mustRun(t, root, "tag", "demo", "other:1")
	cfg := readDemoConfig(t)
	want := fmt.Sprintf("Error: conflict: unable to delete %s (cannot be forced) - image is being used by running container %s\n", cfg.shortID(), id[:12])
	for _, args := range [][]string{{"rmi", cfg.shortID()}, {"rmi", "-f", cfg.shortID()}} {
		if r := runStrata(t, root, "", args...); r.code != 1 || r.stderr != want {
			t.Errorf("%s: exit %d\n%q\nwant\n%q", strings.Join(args, " "), r.code, r.stderr, want)
		}
	}
	if got := mustRun(t, root, "images", "--format", "{{.Repository}}:{{.Tag}}"); got != "demo:latest\nother:1\n" {
		t.Errorf("images after the refused rmi: %q", got)
	}
	mustRun(t, root, "rm", "-f", "up")
	mustRun(t, root, "rmi", "other:1")
}

// A container keeps the runc root it was made with: exec, stop and rm -f
// under another STRATA_RUNC_ROOT reach it, and rm -f leaves nothing in runc
// and no container running.
func TestRun_RuncRootKeptInTheRecord(t *testing.T) {
	root := containerStore(t)
	t.Setenv(cliEnv, "1") // the supervisor run -d starts is this test binary
	made := os.Getenv(runcRootEnv)
	id := strings.TrimSpace(mustRun(t, root, "run", "-d", "--name", "up", "demo", "-c", "sleep 30"))
	t.Setenv(runcRootEnv, runctest.Root(t))
	if got := mustRun(t, root, "exec", "up", "echo", "reached"); got != "reached\n" {
		t.Errorf("exec under another runc root: %q", got)
	}
	mustRun(t, root, "rm", "-f", "up")
	out, err := exec.Command("runc", "--root", made, "list", "-q").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("runc under the root %s was made with, after rm -f: %q %v", id[:12], out, err)
	}
	if got := mustRun(t, root, "ps", "-a", "-q"); got != "" {
		t.Errorf("ps -a after rm -f: %q", got)
	}
}

// TestSystemDf_Containers: the Containers row counts every container,
// the running ones as active, and their writable layers' space, what the
// stopped ones hold as reclaimable.
func TestSystemDf_Containers(t *testing.T) {
	root := containerStore(t)
	t.Setenv(cliEnv, "1") // the supervisor run -d starts is this test binary
	mustRun(t, root, "run", "--name", "big", "demo", "-c", "dd if=/dev/zero of=/big bs=1024 count=2048 2>/dev/null")
	mustRun(t, root, "run", "-d", "--name", "up", "demo", "-c", "sleep 30")
	_, rows := tableRows(t, strings.SplitN(mustRun(t, root, "system", "df"), "\n\n", 2)[0])
	if len(rows) < 2 || rows[1][0] != "Containers" || rows[1][1] != "2" || rows[1][2] != "1" {
		t.Fatalf("system df containers row: %q", rows)
	}
	size, reclaim := rows[1][3], rows[1][4]
	if !regexp.MustCompile(`^2\.\d+MB$`).MatchString(size) || !regexp.MustCompile(`^2\.\d+MB \((9\d|100)%\)$`).MatchString(reclaim) {
		t.Errorf("containers size %q reclaimable %q: want the stopped one's 2 MiB, nearly all reclaimable", size, reclaim)
	}
	// Each has an anonymous volume for the image's VOLUME /app/data, which
	// holds what the image has there: a file of 4 bytes.
	if want := []string{"Local Volumes", "2", "2", "8B", "0B (0%)"}; !slices.Equal(rows[2], want) {
		t.Errorf("system df volumes row: %q, want %q", rows[2], want)
	}
	mustRun(t, root, "run", "--name", "named", "-v", "store:/v", "demo", "-c", "echo hi > /v/f")
	// docker's -v sections: per container and per volume.
	sections := strings.Split(mustRun(t, root, "system", "df", "-v"), "\n\n")
	if len(sections) < 6 || sections[2] != "Containers space usage:" || sections[4] != "Local Volumes space usage:" {
		t.Fatalf("df -v sections: %q", sections)
	}
	header, ctrs := tableRows(t, sections[3])
	if want := []string{"CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"}; !slices.Equal(header, want) {
		t.Errorf("containers header %q, want %q", header, want)
	}
	byName := map[string][]string{}
	for _, c := range ctrs {
		byName[c[len(c)-1]] = c
	}
	if c := byName["big"]; len(c) != 8 || c[1] != "demo" || c[2] != `"/bin/sh -c dd if=/d…"` || c[3] != "1" ||
		!regexp.MustCompile(`^2\.\d+MB$`).MatchString(c[4]) || !strings.HasPrefix(c[6], "Exited (0) ") {
		t.Errorf("df -v row of big: %q", c)
	}
	if c := byName["up"]; len(c) != 8 || !strings.HasPrefix(c[6], "Up ") {
		t.Errorf("df -v row of up: %q", c)
	}
	if c := byName["named"]; len(c) != 8 || c[3] != "2" {
		t.Errorf("df -v row of named: %q (want 2 local volumes: its -v and the image's)", c)
	}
	header, vols := tableRows(t, sections[5])
	if want := []string{"VOLUME NAME", "LINKS", "SIZE"}; !slices.Equal(header, want) || len(vols) != 4 {
		t.Errorf("volumes table %q, %d rows: %q", header, len(vols), vols)
	}
	for _, v := range vols {
		if want := []string{v[0], "1", "4B"}; v[0] != "store" && !slices.Equal(v, want) {
			t.Errorf("anonymous volume %q, want %q", v, want)
		}
		if want := []string{"store", "1", "3B"}; v[0] == "store" && !slices.Equal(v, want) {
			t.Errorf("named volume %q, want %q", v, want)
		}
	}
	mustRun(t, root, "rm", "-f", "-v", "up", "big", "named")
	if got := mustRun(t, root, "system", "df", "-v", "--format", "{{len .Containers}} {{range .Volumes}}{{.Name}} {{.Links}}{{end}}"); got != "0 store 0" {
		t.Errorf("after rm -v: %q, want no container and the named volume unused", got)
	}
	_, rows = tableRows(t, strings.SplitN(mustRun(t, root, "system", "df"), "\n\n", 2)[0])
	if !slices.Equal(rows[1], []string{"Containers", "0", "0", "0B", "0B"}) {
		t.Errorf("after rm: %q", rows[1])
	}
}

// TestRun_Debian runs a real distribution: bash, users from its own
// /etc/passwd, and apt-get installing a package from deb.debian.org
// through the private network (slirp4netns), committed and run again
// without a network.
func TestRun_Debian(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, runc")
	}
	root := storetest.Root(t)
	if out := mustRun(t, root, "load", "-q", "-i", filepath.Join(fixtures.Debian(t), "oci")); out != "Loaded image: debian:latest\n" {
		t.Fatalf("load printed %q", out)
	}
	t.Cleanup(func() {
		if ids := strings.Fields(mustRun(t, root, "ps", "-a", "-q", "--no-trunc")); len(ids) > 0 {
			mustRun(t, root, append([]string{"rm", "-f"}, ids...)...)
		}
		for _, img := range []string{"hello:1"} {
			runStrata(t, root, "", "rmi", img)
		}
	})
	if got := mustRun(t, root, "run", "--rm", "debian", "bash", "-c", `echo "$BASH_VERSION" | cut -d. -f1; cat /etc/debian_version | cut -d. -f1; echo $HOME`); got != "5\n12\n/root\n" {
		t.Errorf("bash in debian: %q", got)
	}
	if got := mustRun(t, root, "run", "--rm", "-u", "nobody", "debian", "id"); got != "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n" {
		t.Errorf("id as nobody: %q", got)
	}
	if r := runStrata(t, root, "", "run", "--rm", "debian", "getent", "hosts", "deb.debian.org"); r.code != 0 {
		t.Skipf("deb.debian.org does not resolve through slirp4netns here (exit %d %q): apt-get not tried", r.code, r.stderr)
	}
	mustRun(t, root, "run", "--name", "apt", "debian", "bash", "-c",
		"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hello >/dev/null")
	if diff := mustRun(t, root, "diff", "apt"); !strings.Contains(diff, "A /usr/bin/hello\n") {
		t.Errorf("diff after apt-get install hello:\n%s", diff)
	}
	mustRun(t, root, "commit", "apt", "hello:1")
	if got := mustRun(t, root, "run", "--rm", "--network", "none", "hello:1", "hello"); got != "Hello, world!\n" {
		t.Errorf("hello from the committed image: %q", got)
	}
}
