package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/layerstore"
)

// openContainers opens the store and its containers.
func (g *globals) openContainers() (*layerstore.Store, *container.Containers, error) {
	s, err := g.openStore()
	if err != nil {
		return nil, nil, err
	}
	c, err := container.Open(s, container.Config{Logger: g.logger(), Runtime: runcRuntime()})
	if err != nil {
		return nil, nil, err
	}
	return s, c, nil
}

// runcRootEnv names runc's state directory (runc --root) when set, for the
// containers made (and builds run) from now on: a container's record keeps
// the one it was made with, which every later command on it uses.
// Default: /run/strata/runc.
const runcRootEnv = "STRATA_RUNC_ROOT"

func runcRuntime() *container.Runtime {
	return &container.Runtime{Root: os.Getenv(runcRootEnv)}
}

// startDetachedContainer runs container id under a supervisor process of
// its own and returns once the container runs (or has already ended).
func startDetachedContainer(g *globals, c *container.Containers, id string) error {
	line, err := detach(g, c.Records().Dir(id)+"/supervisor.log", "container-supervise", "--report-fd", "3", id)
	if err != nil {
		return err
	}
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return errors.New(msg)
	}
	if rest, ok := strings.CutPrefix(line, "error "); ok { // error CODE: message
		code, msg, _ := strings.Cut(rest, ": ")
		if n, err := strconv.Atoi(code); err == nil {
			return &exitError{code: n, err: errors.New(msg)}
		}
		return errors.New(rest)
	}
	return nil
}

// reportError is how a supervisor reports an error that kept its container
// from starting: with the exit status when it is docker's 126 or 127.
func reportError(err error) string {
	var se *container.StartError
	if errors.As(err, &se) {
		return fmt.Sprintf("error %d: %s", se.Code, err)
	}
	return "error: " + err.Error()
}

// failed wraps an error of strata itself (not of the container's command)
// with docker's exit status 125. A command that could not be run has its
// own status (126, 127), with the runtime's reason in docker's words.
func failed(err error) error {
	if err == nil {
		return nil
	}
	var se *container.StartError
	if errors.As(err, &se) {
		return &exitError{code: se.Code, err: err}
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: container.ExitRuntimeFailed, err: err}
}

// exitStatus ends the command with the container's status and no message.
func exitStatus(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}

// commandLine is a container's command as docker ps shows it.
func commandLine(r *container.Record, trunc bool) string {
	args := r.Config.Entrypoint
	cmd := r.Config.Cmd
	if r.Options.Entrypoint != nil {
		args, cmd = r.Options.Entrypoint, nil
	}
	if len(r.Options.Cmd) > 0 {
		cmd = r.Options.Cmd
	}
	s := strings.Join(append(append([]string{}, args...), cmd...), " ")
	if trunc {
		s = ellipsis(s, 20)
	}
	return fmt.Sprintf("%q", s)
}

func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
