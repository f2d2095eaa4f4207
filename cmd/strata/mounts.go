package main

import (
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

type mountsOptions struct {
	quiet   bool
	noTrunc bool
	format  string
}

const mountsTableFormat = "table {{.ID}}\t{{.Image}}\t{{.Mountpoint}}\t{{.TopLayer}}\t{{.Size}}\t{{.PID}}\t{{.Status}}"

var mountColumns = map[string]string{
	"ID":         "ID",
	"Image":      "IMAGE",
	"ImageID":    "IMAGE ID",
	"Mountpoint": "MOUNTPOINT",
	"TopLayer":   "TOP-LAYER",
	"Size":       "SIZE",
	"PID":        "PID",
	"Status":     "STATUS",
	"CreatedAt":  "CREATED AT",
	"Mode":       "MODE",
}

// mountRow is one line of "strata mounts".
type mountRow struct {
	ID         string
	Image      string
	ImageID    string
	Mountpoint string
	TopLayer   string // the upper dir; "-" for a read-only mount
	Size       string // disk space the top layer takes
	PID        string
	Status     string // running, starting, stale, dead or stopped (see the help)
	CreatedAt  string
	Mode       string // rw or ro
}

func newMountsCmd(g *globals) *cobra.Command {
	o := &mountsOptions{}
	cmd := &cobra.Command{
		Use:   "mounts [OPTIONS]",
		Short: "List mounts",
		Long: `List the mounts of the store: their ID, image, mountpoint, top layer (the
ephemeral upper dir that holds their changes) and its size on disk, the pid of
the server (a shared server serves up to STRATA_MOUNTS_PER_SERVER mounts, so
several show one pid; when it dies they all go stale) and its status:

  running   the server serves the mount
  stale     the server is gone and the mountpoint says "Transport endpoint
            is not connected": "strata umount DIR" cleans it up
  dead      the server is gone and nothing is mounted: "strata umount DIR"
            drops the lease and the top layer
  stopped   a mount that keeps its top layer across restarts of its server
            (a stopped container's), served by no one now

--format takes a Go template over .ID .Image .ImageID .Mountpoint .TopLayer
.Size .PID .Status .CreatedAt .Mode; "table TEMPLATE" adds a header, "json"
prints each row as JSON.`,
		Example: `  strata mounts
  strata mounts -q
  strata mounts --format '{{.Mountpoint}} {{.Status}}'`,
		Args:    cobra.NoArgs,
		GroupID: "mount",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMounts(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show mount IDs")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.StringVar(&o.format, "format", "", "format output using a Go template, \"table TEMPLATE\" or \"json\"")
	return cmd
}

func runMounts(cmd *cobra.Command, g *globals, o *mountsOptions) error {
	format := o.format
	switch {
	case (format == "" || format == tableFormatKey) && o.quiet:
		format = "{{.ID}}"
	case format == "" || format == tableFormatKey:
		format = mountsTableFormat
	}
	rf, err := newRowFormatter(format, mountColumns)
	if err != nil {
		return err
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	recs, err := s.Mounts()
	if err != nil {
		return err
	}
	slices.SortFunc(recs, func(a, b layerstore.MountRecord) int { return b.Created.Compare(a.Created) })
	mi, err := session.ReadMountinfo()
	if err != nil {
		return err
	}
	for _, m := range recs {
		row := mountRow{
			ID:         m.ID,
			Image:      m.Ref,
			ImageID:    displayID(m.Image, o.noTrunc),
			Mountpoint: m.Dir,
			TopLayer:   "-",
			Size:       "-",
			PID:        strconv.Itoa(m.PID),
			Status:     string(session.StatusOf(&m, mi)),
			CreatedAt:  m.Created.Local().Format(time.DateTime),
			Mode:       "rw",
		}
		if row.Image == "" {
			row.Image = row.ImageID
		}
		if m.ReadOnly {
			row.Mode = "ro"
		} else {
			row.TopLayer = session.UpperDir(s, m.ID)
			if n, err := s.MountUsage(m.ID); err == nil {
				row.Size = humanSize(n, 3)
			}
		}
		if err := rf.row(row); err != nil {
			return err
		}
	}
	return rf.flush(cmd.OutOrStdout())
}
