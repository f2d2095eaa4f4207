package mountserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// ErrGaveUp is a Report's Ready when the one who asked for the mount hung
// up before it was ready (Ctrl-C of "strata mount -d"): the mount is then
// ended, not left behind.
var ErrGaveUp = errors.New("the one who asked for the mount gave up before it was ready")

// answerWait is how long Ready waits for the asker's "ok".
const answerWait = time.Minute

// Report is a server's side of what it tells the one who asked for a
// mount: one line, "ready ID" or "error: ..." (a shared server's own
// start: "listening"). On a socket (the report fd "strata mount -d" gives,
// a shared server's connection) the asker answers a ready line with "ok",
// or hangs up if it gave up meanwhile, and Ready then says ErrGaveUp. On a
// pipe nobody answers.
type Report struct {
	w      io.WriteCloser // nil: nowhere
	answer chan error     // the asker's "ok" (nil) or hang-up; nil on a pipe
	done   bool
	// Then, if set, is told each line said, after it is said.
	Then func(line string)
}

// NewReport is the Report on fd (0: nowhere), the report fd a parent that
// waits for the mount gives its server. An fd that is not a pipe or a
// socket is refused: a report is never written into a file the server
// happened to inherit.
func NewReport(fd int) (*Report, error) {
	if fd <= 0 {
		return &Report{}, nil
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("report fd %d: %w", fd, err)
	}
	t := st.Mode & syscall.S_IFMT
	if t != syscall.S_IFIFO && t != syscall.S_IFSOCK {
		return nil, fmt.Errorf("report fd %d is not a pipe or a socket (file type %#o)", fd, t)
	}
	f := os.NewFile(uintptr(fd), "report")
	if t == syscall.S_IFIFO {
		return &Report{w: f}, nil
	}
	return newAnswered(f, bufio.NewReader(f)), nil
}

// newAnswered is a Report on a socket, read for the answer through r.
func newAnswered(w io.WriteCloser, r *bufio.Reader) *Report {
	rp := &Report{w: w, answer: make(chan error, 1)}
	go func() {
		line, err := r.ReadString('\n')
		if strings.TrimSpace(line) == "ok" {
			rp.answer <- nil
			return
		}
		rp.answer <- fmt.Errorf("%w (%v)", ErrGaveUp, errOr(err, "it said "+line))
	}()
	return rp
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// Say writes msg as one line and closes the report; later calls say
// nothing.
func (r *Report) Say(msg string) {
	r.say(msg, true)
}

func (r *Report) say(msg string, end bool) {
	if r.done {
		return
	}
	line := strings.ReplaceAll(strings.TrimSpace(msg), "\n", "; ") // one line
	if r.w != nil {
		fmt.Fprintln(r.w, line)
		if end {
			r.done = true
			r.w.Close()
		}
	} else {
		r.done = true
	}
	if r.Then != nil {
		r.Then(line)
	}
}

// Ready says "ready ID" and, on a socket, waits for the asker's "ok": if
// it hung up instead, Ready returns ErrGaveUp and the report stays open
// for the error the caller says once it has ended the mount.
func (r *Report) Ready(id string) error {
	if r.done {
		return nil
	}
	r.say("ready "+id, r.answer == nil)
	if r.answer == nil {
		return nil
	}
	select {
	case err := <-r.answer:
		if err != nil {
			return err
		}
	case <-time.After(answerWait):
		return fmt.Errorf("%w: no answer in %s", ErrGaveUp, answerWait)
	}
	r.done = true
	return r.w.Close()
}

// Reporter is NewReport as a function that says one line (Say), for a
// server that reports once (a container's supervisor).
func Reporter(fd int) (func(string), error) {
	r, err := NewReport(fd)
	if err != nil {
		return nil, err
	}
	return r.Say, nil
}
