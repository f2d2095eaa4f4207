package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/transfer/registry"
	"golang.org/x/term"
)

type loginOptions struct {
	registryFlags
	user          string
	password      string
	passwordStdin bool
}

func newLoginCmd(g *globals) *cobra.Command {
	o := &loginOptions{}
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry",
		Long: `Log in to a registry (Docker Hub when no server is named): the credentials are checked
against it and kept where docker keeps them, in $DOCKER_CONFIG/config.json (~/.docker/config.json,
mode 0600) or the credential helper it names (credsStore, credHelpers), so strata and docker share them.`,
		Example: `  strata login localhost:5000
  echo "$PASS" | strata login -u me --password-stdin registry.example.com`,
		Args:    cobra.MaximumNArgs(1),
		GroupID: "image",
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			return runLogin(cmd, g, o, server)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.user, "username", "u", "", "username")
	f.StringVarP(&o.password, "password", "p", "", "password")
	f.BoolVar(&o.passwordStdin, "password-stdin", false, "take the password from stdin")
	o.registryFlags.add(cmd)
	return cmd
}

func runLogin(cmd *cobra.Command, g *globals, o *loginOptions, server string) error {
	errOut := cmd.ErrOrStderr()
	in := cmd.InOrStdin()
	if o.password != "" {
		fmt.Fprintln(errOut, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
		if o.passwordStdin {
			return fmt.Errorf("--password and --password-stdin are mutually exclusive")
		}
	}
	if o.passwordStdin {
		if o.user == "" {
			return fmt.Errorf("Must provide --username with --password-stdin")
		}
		b, err := io.ReadAll(in)
		if err != nil {
			return err
		}
		o.password = strings.TrimRight(string(b), "\r\n")
	}
	f, isFile := in.(*os.File)
	tty := isFile && term.IsTerminal(int(f.Fd()))
	if o.user == "" {
		if !tty {
			return fmt.Errorf("Error: Cannot perform an interactive login from a non TTY device")
		}
		fmt.Fprint(cmd.OutOrStdout(), "Username: ")
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil {
			return err
		}
		o.user = strings.TrimSpace(line)
	}
	if o.password == "" {
		if !tty {
			return fmt.Errorf("Error: Cannot perform an interactive login from a non TTY device")
		}
		fmt.Fprint(cmd.OutOrStdout(), "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.OutOrStdout())
		if err != nil {
			return err
		}
		o.password = string(b)
	}
	if o.user == "" || o.password == "" {
		return fmt.Errorf("Error: Non-null Username and Password Required")
	}
	c, err := o.client(g)
	if err != nil {
		return err
	}
	if err := c.Login(cmd.Context(), server, o.user, o.password); err != nil {
		return err
	}
	fmt.Fprintf(errOut, "WARNING! Your password will be stored unencrypted in %s.\n", c.DockerConfigPath())
	fmt.Fprintln(cmd.OutOrStdout(), "Login Succeeded")
	return nil
}

func newLogoutCmd(g *globals) *cobra.Command {
	rf := &registryFlags{}
	cmd := &cobra.Command{
		Use:     "logout [SERVER]",
		Short:   "Log out from a registry",
		Long:    "Remove the credentials kept for a registry (Docker Hub when no server is named) from docker's config.json or its credential helper.",
		Example: "  strata logout localhost:5000",
		Args:    cobra.MaximumNArgs(1),
		GroupID: "image",
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			c, err := rf.client(g)
			if err != nil {
				return err
			}
			_, key := registry.ServerHost(server)
			had, err := c.Logout(cmd.Context(), server)
			if err != nil {
				return err
			}
			if !had {
				fmt.Fprintf(cmd.OutOrStdout(), "Not logged in to %s\n", key)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removing login credentials for %s\n", key)
			return nil
		},
	}
	return cmd
}
