package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/strata-dev/strata/container"
)

// runGCLimit is the heap a run's first second may grow to uncollected.
const runGCLimit = 64 << 20

type runOptions struct {
	createOptions
	detach bool
}

func newRunCmd(g *globals) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container",
		Long: `Run COMMAND (or the image's entrypoint and command) in a new container of IMAGE
under runc, as docker run does. The container's root is a strata mount of the
image with a writable top layer of its own, kept until the container is
removed ("strata rm", or --rm when it exits).

Attached (the default), the command's output comes here and strata exits
with its status; 125 when strata itself fails, 126 when the command cannot be
run, 127 when it does not exist. With -d a supervisor process keeps the
container running in the background and strata prints its ID; "strata logs"
shows its output.`,
		Example: `  strata run --rm demo echo hello
  strata run -d --name web demo sh -c 'while :; do date; sleep 1; done'
  strata run -it demo sh`,
		Args:    cobra.MinimumNArgs(1),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd, g, o, args)
		},
	}
	cmd.Flags().SetInterspersed(false)
	o.flags(cmd.Flags())
	cmd.Flags().BoolVarP(&o.detach, "detach", "d", false, "run the container in the background and print its ID")
	return cmd
}

func runRun(cmd *cobra.Command, g *globals, o *runOptions, args []string) error {
	if o.tty && o.interactive && !o.detach && !isTTYReader(cmd.InOrStdin()) {
		return failed(errors.New("the input device is not a TTY"))
	}
	// No garbage collection in a run's first second unless the heap nears
	// runGCLimit: a short run (run --rm IMAGE true) ends before its heap
	// (the FUSE server's buffers) is worth collecting, and collecting it
	// cost a few milliseconds of CPU beside runc's; the cap bounds what a
	// container that writes much at once makes its server hold meanwhile.
	// A longer run collects as usual from then on.
	gc := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(min(runGCLimit, debug.SetMemoryLimit(-1)))
	restore := sync.OnceFunc(func() {
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
	})
	defer restore()
	time.AfterFunc(time.Second, restore)
	_, c, err := g.openContainers()
	if err != nil {
		return failed(err)
	}
	rec, err := createContainer(cmd, c, &o.createOptions, args, true)
	if err != nil {
		return failed(err)
	}
	if o.detach {
		if err := startDetachedContainer(g, c, rec.ID); err != nil {
			return failed(err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), rec.ID)
		return nil
	}
	code, err := runAttached(cmd, c, rec.ID, o.interactive)
	if err != nil {
		return failed(err)
	}
	return exitStatus(code)
}

// runAttached runs container id with this process as its supervisor and
// the command's stdio as its own. SIGINT and SIGTERM do not end strata but
// the container: a terminal's Ctrl-C reaches runc (in strata's process
// group), which passes it on; a SIGTERM sent to strata is passed on here.
func runAttached(cmd *cobra.Command, c *container.Containers, id string, interactive bool) (int, error) {
	stdio := container.Stdio{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
	if interactive {
		stdio.Stdin = cmd.InOrStdin()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sig:
				if s == syscall.SIGTERM {
					_ = c.Kill(id, syscall.SIGTERM)
				}
			case <-done:
				return
			}
		}
	}()
	return c.Run(context.WithoutCancel(cmd.Context()), id, stdio, nil)
}

// isTTYReader says whether r is a terminal.
func isTTYReader(r any) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
