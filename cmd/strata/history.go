package main

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
)

type historyOptions struct {
	human   bool
	noTrunc bool
	quiet   bool
	format  string
}

const (
	historyTableFormat         = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
	historyNonHumanTableFormat = "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
	createdByWidth             = 45
)

var historyColumns = map[string]string{
	"ID":           "IMAGE",
	"CreatedSince": "CREATED",
	"CreatedAt":    "CREATED AT",
	"CreatedBy":    "CREATED BY",
	"Size":         "SIZE",
	"Comment":      "COMMENT",
}

// historyRow is one step of an image's history, docker's fields in the
// order its {{json .}} prints them.
type historyRow struct {
	Comment      string
	CreatedAt    string
	CreatedBy    string
	CreatedSince string
	ID           string
	Size         string
}

func (r historyRow) MarshalJSON() ([]byte, error) {
	return marshalRow(r)
}

func newHistoryCmd(g *globals) *cobra.Command {
	o := &historyOptions{}
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image",
		Long: `Show the steps that built an image, newest first, from its config's history,
with the content size of the layer each step made (0B for steps that made none).
As for images docker loaded from an archive, only the top step carries the image ID;
the steps below show <missing>.

--format takes a Go template over .ID .CreatedSince .CreatedAt .CreatedBy .Size
.Comment; "table TEMPLATE" adds a header row, "json" prints each row as JSON.`,
		Example: `  strata history demo
  strata history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' demo`,
		Args:              cobra.ExactArgs(1),
		GroupID:           "image",
		ValidArgsFunction: completeImages(g, 1, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHistory(cmd, g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.human, "human", "H", true, "print sizes and dates in human readable format")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show image IDs")
	f.StringVar(&o.format, "format", "", "format output using a Go template, \"table TEMPLATE\" or \"json\"")
	return cmd
}

func runHistory(cmd *cobra.Command, g *globals, o *historyOptions, ref string) error {
	format := o.format
	switch {
	case format == "" || format == tableFormatKey:
		switch {
		case o.quiet:
			format = quietFormat
		case !o.human:
			format = historyNonHumanTableFormat
		default:
			format = historyTableFormat
		}
	}
	rf, err := newRowFormatter(format, historyColumns)
	if err != nil {
		return err
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	img, err := s.ResolveImage(ref)
	if err != nil {
		return err
	}
	now := time.Now()
	for i, st := range historySteps(img) {
		id := "<missing>"
		if i == 0 {
			id = displayID(img.ID, o.noTrunc)
		}
		if err := rf.row(st.row(id, o.human, !o.noTrunc, now)); err != nil {
			return err
		}
	}
	return rf.flush(cmd.OutOrStdout())
}

// historyStep is one history entry with the size of the layer it made.
type historyStep struct {
	created   time.Time
	createdBy string
	comment   string
	size      int64
}

// historySteps are the image's history entries, newest first. The layer
// sizes go to the entries that are not empty_layer, in order; layers the
// history does not account for get steps of their own (docker would not
// show them), and non-empty entries beyond the layers show size 0.
func historySteps(img layerstore.Image) []historyStep {
	var steps []historyStep
	layer := 0
	for _, h := range img.Config.History {
		st := historyStep{createdBy: h.CreatedBy, comment: h.Comment}
		if h.Created != nil {
			st.created = *h.Created
		}
		if !h.EmptyLayer {
			if layer < len(img.LayerSizes) {
				st.size = img.LayerSizes[layer]
			}
			layer++
		}
		steps = append(steps, st)
	}
	for ; layer < len(img.LayerSizes); layer++ {
		steps = append(steps, historyStep{size: img.LayerSizes[layer]})
	}
	slices.Reverse(steps)
	return steps
}

// historyEpoch: docker shows no relative time for steps dated before it.
var historyEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (st historyStep) row(id string, human, trunc bool, now time.Time) historyRow {
	r := historyRow{ID: id, Comment: st.comment}
	created := time.Unix(st.created.Unix(), 0)
	r.CreatedAt = created.Format(time.RFC3339)
	switch {
	case !human:
		r.CreatedSince = r.CreatedAt
	case created.After(historyEpoch):
		r.CreatedSince = humanDuration(now.Sub(created)) + " ago"
	}
	r.CreatedBy = strings.ReplaceAll(st.createdBy, "\t", " ")
	if trunc {
		r.CreatedBy = ellipsis(r.CreatedBy, createdByWidth)
	}
	if human {
		r.Size = humanSize(st.size, 3)
	} else {
		r.Size = strconv.FormatInt(st.size, 10)
	}
	return r
}
