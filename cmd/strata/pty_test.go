package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/pty"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/syncbuf"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// openPTY returns a pseudo-terminal pair (internal/pty), closed when the
// test ends: what is written to tty can be read from ptmx.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pty: %v", err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	// A terminal of a size, as a user's is (a new pty has 0 columns).
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 120}); err != nil {
		t.Fatalf("set pty size: %v", err)
	}
	return ptmx, tty
}

// runStrataTTY runs the root command with stdout and stderr on a
// pseudo-terminal, as a user at a terminal would, and returns what the
// terminal showed.
func runStrataTTY(t *testing.T, root string, args ...string) (screen string, err error) {
	t.Helper()
	return runStrataTyping(t, root, "", args...)
}

// runStrataTyping is runStrataTTY with stdin on the terminal too, and typed
// typed at it before the command starts (the terminal echoes it).
func runStrataTyping(t *testing.T, root, typed string, args ...string) (screen string, err error) {
	t.Helper()
	ptmx, tty := openPTY(t)
	if !term.IsTerminal(int(tty.Fd())) {
		t.Fatal("the pty is not a terminal")
	}
	shown := make(chan string)
	go func() {
		var b bytes.Buffer
		io.Copy(&b, ptmx) // ends with EIO once the tty side is closed
		shown <- b.String()
	}()
	cmd := newRootCmd()
	cmd.SetOut(tty)
	cmd.SetErr(tty)
	if typed != "" {
		if _, err := ptmx.WriteString(typed); err != nil {
			t.Fatal(err)
		}
		cmd.SetIn(tty)
	} else {
		cmd.SetIn(strings.NewReader(""))
	}
	cmd.SetArgs(append([]string{"--root", root, "--lock-timeout", "5"}, args...))
	err = cmd.Execute()
	tty.Close()
	return <-shown, err
}

// TestProgress_OnATerminal runs every command that draws progress with its
// stderr on a terminal: import of a tarball (whose layer has no digest to
// show), load, save and commit each draw a bar per layer, then their
// writing phase and a one-line summary with the total time.
func TestProgress_OnATerminal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the fixture image holds device nodes and owners")
	}
	root := storetest.Root(t)
	rootfs := filepath.Join(fixtureDir(t), "rootfs.tar")
	summary := regexp.MustCompile(`(?m)^\w+ \S+: \d+ layers?, [0-9.]+[kMG]?B( \(\d+ already stored\))? in [0-9.]+(ms|s|m)`)
	check := func(name, screen string, want ...string) {
		t.Helper()
		screen = strings.ReplaceAll(screen, "\r\n", "\n")
		for _, w := range want {
			if !strings.Contains(screen, w) {
				t.Errorf("%s on a terminal: no %q in\n%q", name, w, screen)
			}
		}
		if !regexp.MustCompile(`layer  \[=+\]  [0-9.]+ [kKMG]?B / [0-9.]+ [kKMG]?B`).MatchString(screen) {
			t.Errorf("%s on a terminal: no full bar with its bytes:\n%q", name, screen)
		}
		if summary.FindString(screen) == "" {
			t.Errorf("%s on a terminal: no summary line:\n%q", name, screen)
		}
	}

	screen, err := runStrataTTY(t, root, "import", rootfs, "flat:tty")
	if err != nil {
		t.Fatalf("import on a terminal: %v\n%s", err, screen)
	}
	check("import", screen, "tarball: ", "imported layer", "Writing to the store", "Imported flat:tty: 1 layer, ", "\nsha256:")

	screen, err = runStrataTTY(t, root, "load", "-i", filepath.Join(fixtureDir(t), "demo.docker.tar"))
	if err != nil {
		t.Fatalf("load on a terminal: %v\n%s", err, screen)
	}
	check("load", screen, "loaded layer  [====", "Writing to the store", "Loaded demo:latest: 5 layers, ", "Loaded image: demo:latest")
	if got := mustRun(t, root, "images", "--format", "{{.Repository}}:{{.Tag}}"); got != "flat:tty\ndemo:latest\n" {
		t.Errorf("images after import and load on a terminal: %q", got)
	}

	screen, err = runStrataTTY(t, root, "save", "-o", filepath.Join(t.TempDir(), "demo.tar"), "demo")
	if err != nil {
		t.Fatalf("save on a terminal: %v\n%s", err, screen)
	}
	check("save", screen, "saved layer  [====", "Saved demo: 5 layers, ")

	dir, done := startMount(t, root)
	if err := os.WriteFile(filepath.Join(dir, "etc/motd"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	screen, err = runStrataTTY(t, root, "commit", dir, "demo:committed")
	if err != nil {
		t.Fatalf("commit on a terminal: %v\n%s", err, screen)
	}
	check("commit", screen, "tarball: ", "committed layer", "Storing the image", "Committed demo:committed: 1 layer, ")
	mustRun(t, root, "umount", dir)
	if r := <-done; r.err != nil {
		t.Errorf("mount: %v", r.err)
	}
}

// TestProgress_Plain: off a terminal, progress is one plain line per layer,
// the writing phase and the summary, on stderr (stdout keeps what scripts
// read); -q prints none of it.
func TestProgress_Plain(t *testing.T) {
	root := storetest.Root(t)
	archive := filepath.Join(fixtureDir(t), "demo.docker.tar")
	r := runStrata(t, root, "", "load", "-i", archive)
	if r.err != nil || r.stdout != "Loaded image: demo:latest\n" {
		t.Fatalf("load: %v %q", r.err, r.stdout)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	layer := regexp.MustCompile(`^[0-9a-f]{12}: loaded [0-9.]+[kMG]?B in [0-9.]+(µs|ms|s) \([0-9.]+[kMG]?B/s\)$`)
	if len(lines) != 7 {
		t.Fatalf("load's progress: want 5 layers, a phase and a summary:\n%s", r.stderr)
	}
	for _, l := range lines[:5] {
		if !layer.MatchString(l) {
			t.Errorf("layer line %q", l)
		}
	}
	if lines[5] != "Writing to the store..." || !strings.HasPrefix(lines[6], "Loaded demo:latest: 5 layers, ") {
		t.Errorf("load's phase and summary: %q", lines[5:])
	}
	r = runStrata(t, root, "", "load", "-i", archive)
	if !strings.Contains(r.stderr, ": already stored\n") || !strings.Contains(r.stderr, "5 layers, 0B (5 already stored) in ") {
		t.Errorf("second load:\n%s", r.stderr)
	}
	for _, args := range [][]string{
		{"load", "-q", "-i", archive},
		{"save", "-q", "-o", filepath.Join(t.TempDir(), "x.tar"), "demo"},
		{"import", "-q", filepath.Join(fixtureDir(t), "rootfs.tar"), "q:1"},
	} {
		if r := runStrata(t, root, "", args...); r.err != nil || r.stderr != "" {
			t.Errorf("strata %s: %v, stderr %q", strings.Join(args, " "), r.err, r.stderr)
		}
	}
	r = runStrata(t, root, "", "save", "-o", filepath.Join(t.TempDir(), "x.tar"), "demo")
	if n := strings.Count(r.stderr, ": saved "); r.err != nil || n != 5 || !strings.Contains(r.stderr, "\nSaved demo: 5 layers, ") {
		t.Errorf("save: %v\n%s", r.err, r.stderr)
	}
}

// TestSave_TerminalAndDevNull: save refuses to write an archive to a
// terminal, but /dev/null (a character device, not a terminal) takes it.
func TestSave_TerminalAndDevNull(t *testing.T) {
	root := storetest.Root(t)
	loadDemo(t, root)
	screen, err := runStrataTTY(t, root, "save", "demo")
	if err == nil || !strings.Contains(err.Error(), "refusing to write an archive to a terminal") {
		t.Errorf("save to a terminal: %v\n%q", err, screen)
	}
	null, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	cmd := newRootCmd()
	cmd.SetOut(null)
	var errb bytes.Buffer
	cmd.SetErr(&errb)
	cmd.SetArgs([]string{"--root", root, "save", "demo"})
	if err := cmd.Execute(); err != nil {
		t.Errorf("save > /dev/null: %v\n%s", err, errb.String())
	}
}

// TestRun_TTYResize: strata run -it at a terminal gives the container a
// terminal of the same size, and a resize of it (SIGWINCH to the
// terminal's foreground group, runc among it) reaches the container's.
func TestRun_TTYResize(t *testing.T) {
	root := containerStore(t)
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script (util-linux) is needed: %v", err)
	}
	ptmx, tty := openPTY(t)
	if err := unix.IoctlSetWinsize(int(ptmx.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// script(1) runs strata in a session on a terminal of its own, as a
	// login shell would, and passes a resize of ours on to it.
	line := fmt.Sprintf("%s --root %s run -it --rm demo -c 'echo ready; while read x; do [ \"$x\" = q ] && exit 0; /bin/busybox stty size; done'", self, root)
	cmd := exec.Command("script", "-qfec", line, "/dev/null")
	cmd.Env = append(os.Environ(), cliEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("script did not end")
		}
	})
	var screen syncbuf.Buffer
	go io.Copy(&screen, ptmx)
	wait := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(screen.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("the terminal never showed %q: %q", what, screen.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("ready")
	for _, size := range []unix.Winsize{{Row: 30, Col: 100}, {Row: 40, Col: 132}} {
		if err := unix.IoctlSetWinsize(int(ptmx.Fd()), unix.TIOCSWINSZ, &size); err != nil {
			t.Fatal(err)
		}
		// The size is passed on asynchronously (script, then runc): ask
		// the shell again until it has arrived.
		want := fmt.Sprintf("%d %d\r\n", size.Row, size.Col)
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(screen.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("the container's terminal never became %q: %q", want, screen.String())
			}
			ptmx.Write([]byte("\r"))
			time.Sleep(50 * time.Millisecond)
		}
	}
	ptmx.Write([]byte("q\r"))
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("strata run -it: %v: %q", waitErr, screen.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("strata run -it did not end: %q", screen.String())
	}
}
