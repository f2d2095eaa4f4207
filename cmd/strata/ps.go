package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-dev/strata/container"
)

type psOptions struct {
	all     bool
	quiet   bool
	noTrunc bool
	format  string
	filters filterFlag
}

// psRow is one container as docker ps shows it; the fields are the names
// --format templates use.
type psRow struct {
	ID, Image, Command, CreatedAt, RunningFor, Ports, Status, State, Names, Labels, Size, Mounts, Networks string
}

func newPsCmd(g *globals) *cobra.Command {
	o := &psOptions{}
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS]",
		Short: "List containers",
		Long: `List running containers, or with -a every container, newest first, as docker ps
does: CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES. A container
whose supervisor died shows as exited (255).`,
		Example: `  strata ps -a
  strata ps -a -f status=exited -q
  strata ps --format '{{.Names}} {{.Status}}'`,
		Args:    cobra.NoArgs,
		GroupID: "container",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPs(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "show all containers (default shows just running)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only display container IDs")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.StringVar(&o.format, "format", "", "format output using a Go template ('table', 'table TEMPLATE', 'json' or TEMPLATE)")
	f.VarP(&o.filters, "filter", "f", "filter output: status=created|running|exited, name=…, label=KEY[=VALUE], id=…")
	return cmd
}

func runPs(cmd *cobra.Command, g *globals, o *psOptions) error {
	filters, err := parseFilters(o.filters, "status", "name", "label", "id")
	if err != nil {
		return err
	}
	for _, s := range filters["status"] {
		switch container.Status(s) {
		case container.Created, container.Running, container.Exited:
		default:
			return fmt.Errorf("invalid filter 'status=%s'", s)
		}
	}
	_, c, err := g.openContainers()
	if err != nil {
		return err
	}
	recs, err := c.Records().List()
	if err != nil {
		return err
	}
	now := time.Now()
	format := o.format
	if o.quiet {
		format = "{{.ID}}"
	}
	if format == "" {
		format = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
	}
	f, err := newRowFormatter(format, map[string]string{
		"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
		"RunningFor": "CREATED", "Ports": "PORTS", "Status": "STATUS", "State": "STATE", "Names": "NAMES",
		"Labels": "LABELS", "Size": "SIZE", "Mounts": "MOUNTS", "Networks": "NETWORKS",
	})
	if err != nil {
		return err
	}
	for _, r := range recs {
		if !o.all && len(filters["status"]) == 0 && r.State.Status != container.Running {
			continue
		}
		if !matchContainer(r, filters) {
			continue
		}
		if err := f.row(containerRow(r, !o.noTrunc, now)); err != nil {
			return err
		}
	}
	return f.flush(cmd.OutOrStdout())
}

func matchContainer(r *container.Record, filters map[string][]string) bool {
	if v := filters["status"]; len(v) > 0 && !containsString(v, string(r.State.Status)) {
		return false
	}
	if v := filters["name"]; len(v) > 0 && !anyMatch(v, func(s string) bool { return strings.Contains(r.Name, s) }) {
		return false
	}
	if v := filters["id"]; len(v) > 0 && !anyMatch(v, func(s string) bool { return strings.HasPrefix(r.ID, s) }) {
		return false
	}
	if v := filters["label"]; len(v) > 0 && !matchLabels(r.Labels, v) {
		return false
	}
	return true
}

func containsString(vs []string, s string) bool {
	return anyMatch(vs, func(v string) bool { return v == s })
}

func anyMatch(vs []string, f func(string) bool) bool {
	for _, v := range vs {
		if f(v) {
			return true
		}
	}
	return false
}

func containerRow(r *container.Record, trunc bool, now time.Time) psRow {
	id := r.ID
	if trunc {
		id = id[:12]
	}
	var labels []string
	for k, v := range r.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	network := r.Options.Network
	if network == "" {
		network = container.NetworkNone
	}
	var ports []string
	if r.State.Status == container.Running {
		for _, p := range r.Ports {
			ports = append(ports, p.String())
		}
	}
	return psRow{
		ID:         id,
		Ports:      strings.Join(ports, ", "),
		Image:      r.ImageRef,
		Command:    commandLine(r, trunc),
		CreatedAt:  r.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
		RunningFor: createdSince(now, r.Created),
		Status:     containerStatus(r.State, now),
		State:      string(r.State.Status),
		Names:      r.Name,
		Labels:     strings.Join(labels, ","),
		Networks:   network,
	}
}

// containerStatus is docker's STATUS column.
func containerStatus(s container.State, now time.Time) string {
	switch s.Status {
	case container.Running:
		return "Up " + humanDuration(now.Sub(s.StartedAt))
	case container.Exited:
		if s.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", s.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s ago", s.ExitCode, humanDuration(now.Sub(s.FinishedAt)))
	}
	return "Created"
}
