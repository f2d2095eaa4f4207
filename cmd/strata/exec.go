package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
)

func newExecCmd(g *globals) *cobra.Command {
	o := container.ExecOptions{}
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Long: `Run COMMAND in a running container, with its environment, working directory
and user unless -e, -w or -u say otherwise, as docker exec does. strata exits
with the command's status; 126 when it cannot be run or found.`,
		Example: `  strata exec web ls /
  strata exec -it -u user web sh`,
		Args:    cobra.MinimumNArgs(2),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Tty && o.Interactive && !isTTYReader(cmd.InOrStdin()) {
				return &exitError{code: 1, err: errors.New("the input device is not a TTY")}
			}
			_, c, err := g.openContainers()
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			o.Cmd = args[1:]
			code, err := c.Exec(args[0], o, container.Stdio{Stdin: cmd.InOrStdin(), Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()})
			if err != nil {
				return &exitError{code: code, err: err}
			}
			return exitStatus(code)
		},
	}
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.BoolVarP(&o.Interactive, "interactive", "i", false, "keep standard input open")
	f.BoolVarP(&o.Tty, "tty", "t", false, "allocate a pseudo-terminal")
	f.StringArrayVarP(&o.Env, "env", "e", nil, "set environment variables")
	f.StringVarP(&o.WorkingDir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&o.User, "user", "u", "", "user name or uid, and optionally group (name|uid[:group|gid])")
	return cmd
}
