// Command strata-mount serves mounts of images: the server "strata mount
// -d" starts when strata-mount is installed beside strata (else strata
// serves the mounts itself). Started with --listen it is a shared server,
// which serves up to --max-mounts mounts that strata asks for on its
// socket; else it serves the one mount its command line names. It takes
// the command line strata passes (mountserver.Config.Args or ServerArgs:
// the store, --protocol, the mount's flags) and reports on --ready-fd as
// strata does:
//
//	strata-mount --ready-fd 3 --root DIR --lock-timeout S --protocol=N --listen SOCK --max-mounts K --idle D
//	strata-mount --ready-fd 3 --root DIR --lock-timeout S [--debug] --protocol=N --mount-id ID [--read-only=...] -- IMAGE DIR
//
// It is a binary of its own so that a node's mount servers link the
// store, the file system and the session and nothing of the CLI: each
// starts in less time and holds less memory for as long as it lives.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/strata-dev/strata/internal/mountserver"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	// A parse error goes on the report too: Args puts --ready-fd first.
	c, perr := mountserver.ParseArgs(args)
	rep, err := mountserver.NewReport(c.ReadyFd)
	if err != nil {
		return err
	}
	if perr != nil {
		rep.Say("error: " + perr.Error())
		return perr
	}
	if c.Listen != "" {
		return mountserver.RunShared(context.Background(), c, rep)
	}
	return mountserver.Run(context.Background(), c, rep)
}
