package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/strata-dev/strata/internal/mountserver"
)

// detach starts this binary with the global flags and args as a child in a
// session of its own (a server that outlives the command), its output
// appended to logPath and file descriptor 3 a pipe it reports on. It returns
// the first line the child reports. A child that reports nothing has ended:
// its exit error, or what it wrote to the log, is returned.
func detach(g *globals, logPath string, args ...string) (string, error) {
	return detachExec(g, "", logPath, args...)
}

// detachExec is detach of program bin ("": this binary), which takes the
// global flags as strata does.
func detachExec(g *globals, bin, logPath string, args ...string) (string, error) {
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return "", err
		}
		bin = self
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	start, _ := logf.Seek(0, io.SeekEnd) // what the child writes begins here
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer r.Close()
	all := []string{"--root", g.root, "--lock-timeout", strconv.Itoa(g.lockTimeout)}
	if g.debug {
		all = append(all, "--debug")
	}
	c := exec.Command(bin, append(all, args...)...)
	c.Stdout, c.Stderr = logf, logf
	c.ExtraFiles = []*os.File{w}
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		w.Close()
		return "", err
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	if line = strings.TrimSpace(line); line != "" {
		_ = c.Process.Release()
		return line, nil
	}
	werr := c.Wait()
	b, _ := os.ReadFile(logPath)
	if int64(len(b)) >= start {
		b = b[start:]
	}
	if msg := strings.TrimSpace(string(b)); msg != "" {
		return "", errors.New(msg)
	}
	if werr != nil {
		return "", fmt.Errorf("%s: %w", strings.Join(args, " "), werr)
	}
	return "", nil
}

// reporter is the detached child's side of detach: report writes one line
// on fd (0: nowhere) and closes it.
func reporter(fd int) func(string) { return mountserver.Reporter(fd) }
