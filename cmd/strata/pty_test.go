package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/pty"
	"github.com/strata-dev/strata/internal/storetest"
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
// show) from a file and from stdin's stand-in, and load.
func TestProgress_OnATerminal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the fixture image holds device nodes and owners")
	}
	root := storetest.Root(t)
	rootfs := filepath.Join(fixtureDir(t), "rootfs.tar")

	screen, err := runStrataTTY(t, root, "import", rootfs, "flat:tty")
	if err != nil {
		t.Fatalf("import on a terminal: %v\n%s", err, screen)
	}
	if !strings.Contains(screen, "tarball: Loading layer") || !strings.Contains(screen, "\nsha256:") {
		t.Errorf("import on a terminal: want progress, then the image ID:\n%q", screen)
	}

	screen, err = runStrataTTY(t, root, "load", "-i", filepath.Join(fixtureDir(t), "demo.docker.tar"))
	if err != nil {
		t.Fatalf("load on a terminal: %v\n%s", err, screen)
	}
	if !strings.Contains(screen, ": Loading layer") || !strings.Contains(screen, "Loaded image: demo:latest") {
		t.Errorf("load on a terminal: want progress, then the name:\n%q", screen)
	}
	if got := mustRun(t, root, "images", "--format", "{{.Repository}}:{{.Tag}}"); got != "flat:tty\ndemo:latest\n" {
		t.Errorf("images after import and load on a terminal: %q", got)
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
