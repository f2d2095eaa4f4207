package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
)

// newContainerCmd is "strata container": docker's management command for
// containers, the same commands as at the top level plus inspect and prune.
func newContainerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "container",
		Short:   "Manage containers",
		GroupID: "container",
	}
	ls := newPsCmd(g)
	ls.Use, ls.Aliases = "ls [OPTIONS]", []string{"ps", "list"}
	for _, c := range []*cobra.Command{
		ls, newContainerInspectCmd(g), newContainerPruneCmd(g),
		newRunCmd(g), newCreateCmd(g), newStartCmd(g), newStopCmd(g), newRestartCmd(g),
		newKillCmd(g), newContainerRmCmd(g), newWaitCmd(g), newLogsCmd(g), newExecCmd(g), newCpCmd(g),
	} {
		c.GroupID = ""
		cmd.AddCommand(c)
	}
	return cmd
}

func newContainerPruneCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Long: `Remove every container that is not running, with its writable layer, as docker
container prune does, and the writable layers a crash left without their
container. Asks first unless -f is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if !force && !confirm(cmd.InOrStdin(), out, "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?") {
				return nil
			}
			s, c, err := g.openContainers()
			if err != nil {
				return err
			}
			recs, err := c.Records().List()
			if err != nil {
				return err
			}
			var deleted []string
			var reclaimed int64
			var errs errorList
			for _, r := range recs {
				if r.State.Status == container.Running {
					continue
				}
				size := int64(0)
				if u, err := s.MountUsage(r.MountID); err == nil {
					size = u
				}
				if err := c.Remove(cmd.Context(), r.ID, false, false); err != nil {
					errs = append(errs, err)
					continue
				}
				deleted = append(deleted, r.ID)
				reclaimed += size
			}
			// Top layers whose container a crash took away.
			orphans, size, err := c.RemoveOrphans()
			if err != nil {
				errs = append(errs, err)
			}
			deleted = append(deleted, orphans...)
			reclaimed += size
			if len(deleted) > 0 {
				fmt.Fprintln(out, "Deleted Containers:")
				for _, id := range deleted {
					fmt.Fprintln(out, id)
				}
				fmt.Fprintln(out)
			}
			fmt.Fprintln(out, "Total reclaimed space:", humanSize(reclaimed, 4))
			return errs.join()
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	return cmd
}

func newContainerInspectCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Display detailed information on one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, c, err := g.openContainers()
			if err != nil {
				return err
			}
			var docs []any
			var errs errorList
			for _, ref := range args {
				r, err := c.Records().Get(ref)
				if err != nil {
					errs = append(errs, fmt.Errorf("No such container: %s", ref))
					continue
				}
				docs = append(docs, inspectContainer(s.Root(), c, r))
			}
			if err := writeInspect(cmd.OutOrStdout(), format, docs); err != nil {
				return err
			}
			if err := errs.join(); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format the output using the given Go template")
	return cmd
}

// containerInspect is docker inspect's document for a container, its
// fields in docker's order, with the values strata has and docker's zero
// values for the rest.
type containerInspect struct {
	Id              string
	Created         string
	Path            string
	Args            []string
	State           containerStateDoc
	Image           string
	ResolvConfPath  string
	HostnamePath    string
	HostsPath       string
	LogPath         string
	Name            string
	RestartCount    int
	Driver          string
	Platform        string
	MountLabel      string
	ProcessLabel    string
	AppArmorProfile string
	ExecIDs         []string
	HostConfig      hostConfigDoc
	GraphDriver     graphDriver
	Mounts          []mountDoc
	Config          containerConfigDoc
	NetworkSettings struct{ Networks map[string]struct{} }
}

type containerStateDoc struct {
	Status                                       container.Status
	Running, Paused, Restarting, OOMKilled, Dead bool
	Pid, ExitCode                                int
	Error                                        string
	StartedAt, FinishedAt                        string
}

type hostConfigDoc struct {
	Binds           []string
	ContainerIDFile string
	LogConfig       struct {
		Type   string
		Config map[string]string
	}
	NetworkMode   string
	PortBindings  map[string]any
	RestartPolicy struct {
		Name              string
		MaximumRetryCount int
	}
	AutoRemove     bool
	CgroupnsMode   string
	IpcMode        string
	Privileged     bool
	ReadonlyRootfs bool
	Runtime        string
	Init           bool
}

type mountDoc struct {
	Type        string
	Name        string `json:",omitempty"`
	Source      string
	Destination string
	Driver      string `json:",omitempty"`
	Mode        string
	RW          bool
	Propagation string
}

type containerConfigDoc struct {
	Hostname, Domainname, User              string
	AttachStdin, AttachStdout, AttachStderr bool
	ExposedPorts                            map[string]struct{} `json:",omitempty"`
	Tty, OpenStdin, StdinOnce               bool
	Env, Cmd                                []string
	Image                                   string
	Volumes                                 map[string]struct{}
	WorkingDir                              string
	Entrypoint, OnBuild                     []string
	Labels                                  map[string]string
	StopSignal                              string `json:",omitempty"`
}

// inspectContainer is docker inspect's document for container r.
func inspectContainer(root string, c *container.Containers, r *container.Record) containerInspect {
	cfg := r.RunConfig()
	st := r.State
	args := append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...)
	path := ""
	if len(args) > 0 {
		path, args = args[0], args[1:]
	}
	hostname := r.Options.Hostname
	if hostname == "" {
		hostname = r.ID[:12]
	}
	network := r.Options.Network
	if network == "" {
		network = container.NetworkNone
	}
	dir := c.Records().Dir(r.ID)
	var binds []string
	mounts := []mountDoc{}
	for _, v := range r.Volumes {
		mode := ""
		if v.ReadOnly {
			mode = "ro"
		}
		m := mountDoc{Type: v.Type, Destination: v.Destination, Mode: mode, RW: !v.ReadOnly, Propagation: "rprivate"}
		if v.Type == "bind" {
			m.Source = v.Source
			spec := v.Source + ":" + v.Destination
			if v.ReadOnly {
				spec += ":ro"
			}
			binds = append(binds, spec)
		} else {
			m.Name, m.Source, m.Driver, m.Propagation = v.Name, root+"/volumes/"+v.Name+"/_data", "local", ""
		}
		mounts = append(mounts, m)
	}
	exposed := map[string]struct{}{}
	for p := range cfg.ExposedPorts {
		exposed[p] = struct{}{}
	}
	doc := containerInspect{
		Id:      r.ID,
		Created: r.Created.Format(time.RFC3339Nano),
		Path:    path,
		Args:    args,
		State: containerStateDoc{
			Status: st.Status, Running: st.Status == container.Running, Pid: st.Pid, ExitCode: st.ExitCode, Error: st.Error,
			StartedAt: st.StartedAt.Format(time.RFC3339Nano), FinishedAt: st.FinishedAt.Format(time.RFC3339Nano),
		},
		Image:          r.Image.String(),
		ResolvConfPath: dir + "/etc/resolv.conf",
		HostnamePath:   dir + "/etc/hostname",
		HostsPath:      dir + "/etc/hosts",
		LogPath:        c.LogPath(r.ID),
		Name:           "/" + r.Name,
		Driver:         "strata",
		Platform:       "linux",
		HostConfig: hostConfigDoc{
			Binds: binds, NetworkMode: network, PortBindings: map[string]any{},
			AutoRemove: r.AutoRemove, CgroupnsMode: "host", IpcMode: "private",
			ReadonlyRootfs: r.Options.ReadOnly, Runtime: "runc", Init: r.Options.Init,
		},
		GraphDriver: graphDriver{
			Name: "strata",
			Data: map[string]string{
				"MountID":   r.MountID,
				"UpperDir":  root + "/mounts/" + r.MountID + "/upper",
				"MergedDir": dir + "/rootfs",
			},
		},
		Mounts: mounts,
		Config: containerConfigDoc{
			Hostname: hostname, User: cfg.User,
			AttachStdin: r.OpenStdin, AttachStdout: true, AttachStderr: true,
			ExposedPorts: exposed, Tty: r.Options.Tty, OpenStdin: r.OpenStdin,
			Env: cfg.Env, Cmd: cfg.Cmd, Image: r.ImageRef, Volumes: cfg.Volumes, WorkingDir: cfg.WorkingDir,
			Entrypoint: cfg.Entrypoint, Labels: cfg.Labels, StopSignal: cfg.StopSignal,
		},
	}
	doc.HostConfig.LogConfig.Type, doc.HostConfig.LogConfig.Config = "json-file", map[string]string{}
	doc.HostConfig.RestartPolicy.Name = "no"
	doc.NetworkSettings.Networks = map[string]struct{}{network: {}}
	return doc
}

// writeInspect prints docs as docker inspect does: an indented JSON array,
// or each through the template format.
func writeInspect(w interface{ Write([]byte) (int, error) }, format string, docs []any) error {
	if format == "" {
		if docs == nil {
			docs = []any{}
		}
		b, err := json.MarshalIndent(docs, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	t, err := parseTemplate(format)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if err := execTemplate(t, w, d); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	return nil
}
