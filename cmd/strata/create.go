package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/strata-dev/strata/container"
)

// createOptions are the flags create and run share: what the container is.
type createOptions struct {
	name        string
	env         []string
	envFiles    []string
	workdir     string
	user        string
	entrypoint  string
	hostname    string
	network     string
	readOnly    bool
	interactive bool
	tty         bool
	autoRemove  bool
	stopSignal  string
	stopTimeout int
	labels      []string
	cidfile     string
	volumes     []string
	init        bool
	publish     []string
}

func (o *createOptions) flags(f *pflag.FlagSet) {
	f.StringVar(&o.name, "name", "", "assign a name to the container")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set environment variables (KEY=VALUE, or KEY to pass the host's)")
	f.StringArrayVar(&o.envFiles, "env-file", nil, "read environment variables from a file, a KEY=VALUE or KEY a line")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&o.user, "user", "u", "", "user name or uid, and optionally group, inside the container (name|uid[:group|gid])")
	f.StringVar(&o.entrypoint, "entrypoint", "", "overwrite the image's entrypoint (\"\" clears it)")
	f.StringVarP(&o.hostname, "hostname", "h", "", "container host name")
	f.Bool("help", false, "help for this command") // -h is --hostname, as in docker
	f.StringVar(&o.network, "network", container.NetworkPrivate, "network: private (its own, outbound through slirp4netns, -p publishes ports), none (loopback only) or host")
	f.StringArrayVarP(&o.publish, "publish", "p", nil, "publish a container's port on the host: [HOST-IP:][HOST-PORT:]CONTAINER-PORT[/tcp|udp] (host address 127.0.0.1 unless given)")
	f.BoolVar(&o.readOnly, "read-only", false, "mount the container's root file system read-only")
	f.BoolVarP(&o.interactive, "interactive", "i", false, "keep standard input open")
	f.BoolVarP(&o.tty, "tty", "t", false, "allocate a pseudo-terminal")
	f.BoolVar(&o.autoRemove, "rm", false, "remove the container (and its writable layer) when it exits")
	f.StringVar(&o.stopSignal, "stop-signal", "", "signal to stop the container (default: the image's, else SIGTERM)")
	f.IntVar(&o.stopTimeout, "stop-timeout", -1, "seconds stop waits before it kills the container (default 10)")
	f.StringArrayVarP(&o.labels, "label", "l", nil, "set metadata on the container (KEY=VALUE)")
	f.StringVar(&o.cidfile, "cidfile", "", "write the container ID to the file")
	f.BoolVar(&o.init, "init", false, "run an init (tini or catatonit) as PID 1 that passes signals on and reaps zombies")
	f.StringArrayVarP(&o.volumes, "volume", "v", nil, "mount a volume: HOST-PATH:CTR-PATH[:ro], NAME:CTR-PATH[:ro] or CTR-PATH (anonymous)")
}

// createContainer makes the container the flags describe, image and
// command from args, and writes --cidfile. startNow: it is run at once
// (strata run), see container.CreateOptions.
func createContainer(cmd *cobra.Command, c *container.Containers, o *createOptions, args []string, startNow bool) (*container.Record, error) {
	co := container.CreateOptions{
		StartNow:   startNow,
		Name:       o.name,
		AutoRemove: o.autoRemove,
		OpenStdin:  o.interactive,
		StopSignal: o.stopSignal,
		Options: container.Options{
			Cmd:        args[1:],
			WorkingDir: o.workdir,
			User:       o.user,
			Hostname:   o.hostname,
			Tty:        o.tty,
			ReadOnly:   o.readOnly,
			Network:    o.network,
			Init:       o.init,
		},
	}
	if cmd.Flags().Changed("entrypoint") {
		co.Entrypoint = []string{}
		if o.entrypoint != "" {
			co.Entrypoint = []string{o.entrypoint}
		}
	}
	for _, p := range o.publish {
		port, err := container.ParsePublish(p)
		if err != nil {
			return nil, err
		}
		co.Ports = append(co.Ports, port)
	}
	for _, v := range o.volumes {
		vol, err := container.ParseVolume(v)
		if err != nil {
			return nil, err
		}
		co.Volumes = append(co.Volumes, vol)
	}
	if o.stopTimeout >= 0 {
		co.StopTimeout = &o.stopTimeout
	}
	for _, f := range o.envFiles {
		env, err := readEnvFile(f)
		if err != nil {
			return nil, err
		}
		co.Env = append(co.Env, env...)
	}
	co.Env = append(co.Env, o.env...)
	if len(o.labels) > 0 {
		co.Labels = map[string]string{}
		for _, l := range o.labels {
			k, v, _ := strings.Cut(l, "=")
			co.Labels[k] = v
		}
	}
	if o.cidfile != "" {
		if _, err := os.Stat(o.cidfile); err == nil {
			return nil, fmt.Errorf("container ID file found, make sure the other container isn't running or delete %s", o.cidfile)
		}
	}
	rec, err := c.Create(cmd.Context(), args[0], co)
	if err != nil {
		return nil, err
	}
	if o.cidfile != "" {
		if err := os.WriteFile(o.cidfile, []byte(rec.ID), 0o644); err != nil {
			return rec, fmt.Errorf("write the container ID file: %w", err)
		}
	}
	return rec, nil
}

// readEnvFile reads docker's env-file format: KEY=VALUE or KEY a line, with
// blank lines and # comments skipped.
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _ := strings.Cut(line, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s:%d: variable %q contains whitespaces or has no name", path, n, k)
		}
		env = append(env, line)
	}
	return env, sc.Err()
}

func newCreateCmd(g *globals) *cobra.Command {
	o := &createOptions{}
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Long: `Create a container of IMAGE, as docker create does: its own writable top layer
(kept until the container is removed) and its settings. "strata start" runs it.
Prints the container's ID.`,
		Args:    cobra.MinimumNArgs(1),
		GroupID: "container",
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := g.openContainers()
			if err != nil {
				return failed(err)
			}
			rec, err := createContainer(cmd, c, o, args, false)
			if err != nil {
				return failed(err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), rec.ID)
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	o.flags(cmd.Flags())
	return cmd
}
