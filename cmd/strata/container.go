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
container prune does. Asks first unless -f is given.`,
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
				if r.State.Current().Status == container.Running {
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

// inspectContainer is docker inspect's document for a container, with the
// fields strata has a value for and docker's zero values for the rest.
func inspectContainer(root string, c *container.Containers, r *container.Record) map[string]any {
	cfg := r.RunConfig()
	st := r.State.Current()
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
	mounts := []map[string]any{}
	for _, v := range r.Volumes {
		mode := ""
		if v.ReadOnly {
			mode = "ro"
		}
		m := map[string]any{"Type": v.Type, "Destination": v.Destination, "Mode": mode, "RW": !v.ReadOnly, "Propagation": "rprivate"}
		if v.Type == "bind" {
			m["Source"] = v.Source
			spec := v.Source + ":" + v.Destination
			if v.ReadOnly {
				spec += ":ro"
			}
			binds = append(binds, spec)
		} else {
			m["Name"], m["Source"], m["Driver"], m["Propagation"] = v.Name, root+"/volumes/"+v.Name+"/_data", "local", ""
		}
		mounts = append(mounts, m)
	}
	exposed := map[string]struct{}{}
	for p := range cfg.ExposedPorts {
		exposed[p] = struct{}{}
	}
	return map[string]any{
		"Id":      r.ID,
		"Created": r.Created.Format(time.RFC3339Nano),
		"Path":    path,
		"Args":    args,
		"State": map[string]any{
			"Status": st.Status, "Running": st.Status == container.Running, "Paused": false, "Restarting": false,
			"OOMKilled": false, "Dead": false, "Pid": st.Pid, "ExitCode": st.ExitCode, "Error": st.Error,
			"StartedAt": st.StartedAt.Format(time.RFC3339Nano), "FinishedAt": st.FinishedAt.Format(time.RFC3339Nano),
		},
		"Image":          r.Image.String(),
		"ResolvConfPath": dir + "/etc/resolv.conf",
		"HostnamePath":   dir + "/etc/hostname",
		"HostsPath":      dir + "/etc/hosts",
		"LogPath":        c.LogPath(r.ID),
		"Name":           "/" + r.Name,
		"RestartCount":   0,
		"Driver":         "strata",
		"Platform":       "linux",
		"MountLabel":     "", "ProcessLabel": "", "AppArmorProfile": "",
		"ExecIDs": nil,
		"HostConfig": map[string]any{
			"Binds": binds, "ContainerIDFile": "", "LogConfig": map[string]any{"Type": "json-file", "Config": map[string]string{}},
			"NetworkMode": network, "PortBindings": map[string]any{}, "RestartPolicy": map[string]any{"Name": "no", "MaximumRetryCount": 0},
			"AutoRemove": r.AutoRemove, "ReadonlyRootfs": r.Options.ReadOnly, "Init": r.Options.Init, "Runtime": "runc",
			"Privileged": false, "IpcMode": "private", "CgroupnsMode": "host",
		},
		"GraphDriver": map[string]any{
			"Name": "strata",
			"Data": map[string]string{
				"MountID":   r.MountID,
				"UpperDir":  root + "/mounts/" + r.MountID + "/upper",
				"MergedDir": dir + "/rootfs",
			},
		},
		"Mounts": mounts,
		"Config": map[string]any{
			"Hostname": hostname, "Domainname": "", "User": cfg.User,
			"AttachStdin": r.OpenStdin, "AttachStdout": true, "AttachStderr": true,
			"ExposedPorts": exposed, "Tty": r.Options.Tty, "OpenStdin": r.OpenStdin, "StdinOnce": false,
			"Env": cfg.Env, "Cmd": cfg.Cmd, "Image": r.ImageRef, "Volumes": cfg.Volumes, "WorkingDir": cfg.WorkingDir,
			"Entrypoint": cfg.Entrypoint, "OnBuild": nil, "Labels": cfg.Labels, "StopSignal": cfg.StopSignal,
		},
		"NetworkSettings": map[string]any{
			"Networks": map[string]any{network: map[string]any{}},
		},
	}
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
