package container

import (
	"io"
	"os"

	"github.com/strata-dev/strata/internal/pty"
	"golang.org/x/term"
)

// isTerminal says whether v is a terminal.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// hostConsole gives runc, which wants a terminal of its own for a container
// with one, a pseudo-terminal when stdin is none (a detached container, or
// -t with redirected input): runc's side is the slave, and what the
// container writes comes out of the master into stdio.Stdout. The returned
// stdio is runc's; done closes the pair once runc has exited. When stdin is
// a terminal (-it at one), runc gets it as it is: it puts it in raw mode,
// and on SIGWINCH (sent to the terminal's foreground group, which runc is
// in) gives its size to the container's terminal.
func hostConsole(stdio Stdio) (Stdio, func(), error) {
	if isTerminal(stdio.Stdin) {
		return stdio, func() {}, nil
	}
	master, slave, err := pty.Open()
	if err != nil {
		return stdio, nil, err
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if stdio.Stdout != nil {
			io.Copy(stdio.Stdout, master) // ends with EIO once every slave is closed
		} else {
			io.Copy(io.Discard, master)
		}
	}()
	if stdio.Stdin != nil {
		// Ends at the first read after the run (a write to a closed
		// master); the CLI, whose stdin this is, exits before.
		go io.Copy(master, stdio.Stdin)
	}
	done := func() {
		slave.Close()
		<-copied
		master.Close()
	}
	return Stdio{Stdin: slave, Stdout: slave, Stderr: slave}, done, nil
}
