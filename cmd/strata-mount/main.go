// Command strata-mount serves one mount of an image: the server "strata
// mount -d" starts when strata-mount is installed beside strata (else
// strata serves the mount itself). It takes the command line strata
// passes (mountserver.Config.Args: the store, --protocol, the mount's
// flags) and reports on --ready-fd as strata does:
//
//	strata-mount --root DIR --lock-timeout S [--debug] --protocol=N --mount-id ID --ready-fd 3 [--read-only=...] -- IMAGE DIR
//
// It is a binary of its own so that a node's many mount servers link the
// store, the file system and the session and nothing of the CLI: each
// starts in less time and holds less memory for as long as its mount
// lives.
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
	report, err := mountserver.Reporter(c.ReadyFd)
	if err != nil {
		return err
	}
	if perr != nil {
		report("error: " + perr.Error())
		return perr
	}
	return mountserver.Run(context.Background(), c, report)
}
