package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/layerstore"
)

type dfOptions struct {
	verbose bool
	format  string
}

const (
	dfTableFormat           = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
	dfImageTableFormat      = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Mounts}}"
	dfContainerTableFormat  = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}"
	dfVolumeTableFormat     = "table {{.Name}}\t{{.Links}}\t{{.Size}}"
	dfMountTableFormat      = "table {{.ID}}\t{{.Image}}\t{{.Dir}}\t{{.Size}}\t{{.CreatedSince}}\t{{.Status}}"
	dfLayerTableFormat      = "table {{.ID}}\t{{.Size}}\t{{.Images}}\t{{.Mounts}}\t{{.HeldBy}}"
	dfTreeTableFormat       = "table {{.ID}}\t{{.Layers}}\t{{.Entries}}\t{{.Size}}"
	dfSummaryTypeImages     = "Images"
	dfSummaryTypeContainers = "Containers"
	dfSummaryTypeVolumes    = "Local Volumes"
	dfSummaryTypeMounts     = "Mounts"
	dfSummaryTypeLayers     = "Layers"
)

var (
	dfColumns = map[string]string{
		"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE",
	}
	dfImageColumns = map[string]string{
		"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
		"Size": "SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "Mounts": "MOUNTS",
	}
	dfContainerColumns = map[string]string{
		"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "LocalVolumes": "LOCAL VOLUMES", "Size": "SIZE",
		"RunningFor": "CREATED", "CreatedAt": "CREATED AT", "Status": "STATUS", "Names": "NAMES",
	}
	dfVolumeColumns = map[string]string{"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}
	dfMountColumns  = map[string]string{
		"ID": "MOUNT ID", "Image": "IMAGE", "Dir": "DIRECTORY", "Size": "SIZE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Status": "STATUS",
	}
	dfLayerColumns = map[string]string{
		"ID": "LAYER ID", "Size": "SIZE", "Images": "IMAGES", "Mounts": "MOUNTS", "HeldBy": "HELD BY",
	}
	dfTreeColumns = map[string]string{
		"ID": "CHAIN ID", "Layers": "LAYERS", "Entries": "ENTRIES", "Size": "SIZE",
	}
)

// dfRow is one line of the summary table.
type dfRow struct {
	Active      string
	Reclaimable string
	Size        string
	TotalCount  string
	Type        string
}

func (r dfRow) MarshalJSON() ([]byte, error) {
	return marshalRow(r)
}

// dfImageRow is one image of "df -v": docker's columns, MOUNTS for CONTAINERS.
type dfImageRow struct {
	CreatedAt    string
	CreatedSince string
	ID           string
	Mounts       string
	Repository   string
	SharedSize   string
	Size         string
	Tag          string
	UniqueSize   string
}

func (r dfImageRow) MarshalJSON() ([]byte, error) {
	return marshalRow(r)
}

// dfContainerRow is one container of "df -v", docker's columns.
type dfContainerRow struct {
	Command      string
	CreatedAt    string
	ID           string
	Image        string
	LocalVolumes string
	Names        string
	RunningFor   string
	Size         string
	Status       string
}

func (r dfContainerRow) MarshalJSON() ([]byte, error) {
	return marshalRow(r)
}

// dfVolumeRow is one volume of "df -v": LINKS counts the containers that
// mount it.
type dfVolumeRow struct {
	Links string
	Name  string
	Size  string
}

func (r dfVolumeRow) MarshalJSON() ([]byte, error) {
	return marshalRow(r)
}

type dfMountRow struct {
	CreatedAt    string
	CreatedSince string
	Dir          string
	ID           string
	Image        string
	Size         string
	Status       string
}

func (r dfMountRow) MarshalJSON() ([]byte, error) {
	return marshalRow(r)
}

type dfLayerRow struct {
	HeldBy string
	ID     string
	Images string
	Mounts string
	Size   string
}

func (r dfLayerRow) MarshalJSON() ([]byte, error) {
	return marshalRow(r)
}

// dfTreeRow is one stored merged tree of "df -v".
type dfTreeRow struct {
	Entries string
	ID      string
	Layers  string
	Size    string
}

func (r dfTreeRow) MarshalJSON() ([]byte, error) {
	return marshalRow(r)
}

// dfVerbose is what a "df -v --format" template sees.
type dfVerbose struct {
	Images     []dfImageRow
	Containers []dfContainerRow
	Volumes    []dfVolumeRow
	Mounts     []dfMountRow
	Layers     []dfLayerRow
	Trees      []dfTreeRow
}

func newDfCmd(g *globals) *cobra.Command {
	o := &dfOptions{}
	cmd := &cobra.Command{
		Use:   "df [OPTIONS]",
		Short: "Show store disk usage",
		Long: `Show how much the store holds, as docker system df does, with mounts in place of
containers and a row for layers:

  Images  SIZE is the content of the images' layers, each distinct layer once
          (docker's definition: one image's SIZE is its SIZE in "strata images");
          RECLAIMABLE is that of the layers no live mount uses.
  Containers  SIZE is the disk space of the containers' writable layers;
          ACTIVE counts running ones, RECLAIMABLE is the others' (container prune).
  Local Volumes  SIZE is the files the volumes hold; ACTIVE counts those a
          container mounts, RECLAIMABLE is the others'.
  Mounts  SIZE is the disk space of the mounts' copy-on-write layers;
          RECLAIMABLE is that of mounts whose server is gone (strata gc).
  Layers  SIZE is the file content of every layer, summed over layers.

A last line counts the stored objects (one file per distinct content) and what
sharing them across layers and images saves, and one the tree files (the merged
tree of each chain mounted or built, derived from its layers); then, per holder
(containerd's snapshotter), the images and layers it holds. -v lists images,
containers, volumes, mounts, layers and trees; --format takes a Go template over
.Type .TotalCount .Active .Size .Reclaimable (with -v: over .Images .Containers
.Volumes .Mounts .Layers .Trees).`,
		Example: `  strata system df
  strata system df -v
  strata system df --format '{{.Type}}: {{.Size}} ({{.Reclaimable}} reclaimable)'
  strata system df --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDf(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.verbose, "verbose", "v", false, "show detailed information on space usage")
	f.StringVar(&o.format, "format", "", "format output using a Go template, \"table TEMPLATE\" or \"json\"")
	return cmd
}

// dfReport is the store's usage, gathered once.
type dfReport struct {
	du     *layerstore.DiskUsage
	images []layerstore.Image
	mounts []layerstore.MountRecord
	usage  map[string]layerstore.MountUsage // by mount ID
	ctrs   []*container.Record
	vols   []container.VolumeUsage
	links  map[string]int // containers by volume name
}

func gatherDf(s *layerstore.Store) (*dfReport, error) {
	du, err := s.DiskUsage()
	if err != nil {
		return nil, err
	}
	imgs, err := s.Images()
	if err != nil {
		return nil, err
	}
	mounts, err := s.Mounts()
	if err != nil {
		return nil, err
	}
	recs, err := container.OpenRecords(container.RecordsDir(s.Root()))
	if err != nil {
		return nil, err
	}
	ctrs, err := recs.List()
	if err != nil {
		return nil, err
	}
	vols, err := container.StoreVolumes(s.Root())
	if err != nil {
		return nil, err
	}
	r := &dfReport{du: du, images: imgs, mounts: mounts, usage: map[string]layerstore.MountUsage{}, ctrs: ctrs, vols: vols, links: map[string]int{}}
	for _, c := range ctrs {
		for _, v := range c.Volumes {
			if v.Type == "volume" {
				r.links[v.Name]++
			}
		}
	}
	for _, m := range du.MountUsage {
		r.usage[m.ID] = m
	}
	return r, nil
}

func runDf(cmd *cobra.Command, g *globals, o *dfOptions) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	r, err := gatherDf(s)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if o.verbose {
		return r.writeVerbose(out, o.format)
	}
	format := o.format
	if format == "" || format == tableFormatKey {
		format = dfTableFormat
	}
	rf, err := newRowFormatter(format, dfColumns)
	if err != nil {
		return err
	}
	for _, row := range r.summary() {
		if err := rf.row(row); err != nil {
			return err
		}
	}
	if err := rf.flush(out); err != nil {
		return err
	}
	if o.format == "" || o.format == tableFormatKey {
		fmt.Fprintln(out)
		fmt.Fprintln(out, r.objectsLine())
		fmt.Fprintln(out, r.treesLine())
		for _, l := range r.heldLines() {
			fmt.Fprintln(out, l)
		}
	}
	return nil
}

// summary is the TYPE TOTAL ACTIVE SIZE RECLAIMABLE table.
func (r *dfReport) summary() []dfRow {
	du := r.du
	activeImages := 0
	for _, u := range du.Images {
		if u.Mounts > 0 {
			activeImages++
		}
	}
	activeMounts := 0
	var staleSize int64
	for _, m := range r.mounts {
		if u := r.usage[m.ID]; u.Alive {
			activeMounts++
		} else {
			staleSize += u.Size
		}
	}
	activeCtrs := 0
	var ctrSize, ctrIdle int64
	for _, c := range r.ctrs {
		size := r.usage[c.MountID].Size
		ctrSize += size
		if c.State.Status == container.Running {
			activeCtrs++
		} else {
			ctrIdle += size
		}
	}
	activeVols := 0
	var volSize, volIdle int64
	for _, v := range r.vols {
		volSize += v.Size
		if r.links[v.Name] > 0 {
			activeVols++
		} else {
			volIdle += v.Size
		}
	}
	activeLayers := 0
	var activeLayersSize, imagesSize, imagesReclaimable int64
	for _, l := range du.LayerUsage {
		if l.Mounts > 0 {
			activeLayers++
			activeLayersSize += l.Size
		}
		// One definition of an image's size everywhere (images, df, prune):
		// the content of its layers, each distinct layer once, as docker's.
		if l.Images > 0 {
			imagesSize += l.Size
			if l.Mounts == 0 {
				imagesReclaimable += l.Size
			}
		}
	}
	return []dfRow{
		{Type: dfSummaryTypeImages, TotalCount: itoa(len(du.Images)), Active: itoa(activeImages),
			Size: humanSize(imagesSize, 4), Reclaimable: reclaimable(imagesReclaimable, imagesSize)},
		{Type: dfSummaryTypeContainers, TotalCount: itoa(len(r.ctrs)), Active: itoa(activeCtrs),
			Size: humanSize(ctrSize, 4), Reclaimable: reclaimable(ctrIdle, ctrSize)},
		{Type: dfSummaryTypeVolumes, TotalCount: itoa(len(r.vols)), Active: itoa(activeVols),
			Size: humanSize(volSize, 4), Reclaimable: reclaimable(volIdle, volSize)},
		{Type: dfSummaryTypeMounts, TotalCount: itoa(len(r.mounts)), Active: itoa(activeMounts),
			Size: humanSize(du.MountsSize, 4), Reclaimable: reclaimable(staleSize, du.MountsSize)},
		{Type: dfSummaryTypeLayers, TotalCount: itoa(du.Layers), Active: itoa(activeLayers),
			Size: humanSize(du.LayersSize, 4), Reclaimable: reclaimable(max(0, du.LayersSize-activeLayersSize), du.LayersSize)},
	}
}

// reclaimable is docker's RECLAIMABLE cell: "1.2MB (40%)".
func reclaimable(n, total int64) string {
	if total > 0 {
		return fmt.Sprintf("%s (%d%%)", humanSize(n, 4), n*100/total)
	}
	return humanSize(n, 4)
}

// objectsLine makes the sharing visible: distinct contents stored once
// against the content the images hold.
func (r *dfReport) objectsLine() string {
	du := r.du
	return fmt.Sprintf("Stored objects: %d, %s on disk for %s of file content across images (%s saved by sharing)",
		du.Objects, humanSize(du.ObjectsOnDisk, 4), humanSize(du.ImagesSize, 4), humanSize(max(0, du.ImagesSize-du.ObjectsSize), 4))
}

// heldLines say, per holder (containerd's snapshotter), how many images and
// layers prune and rmi keep for it; none when nothing is held.
func (r *dfReport) heldLines() []string {
	images, layers := map[string]int{}, map[string]int{}
	var holders []string
	for _, u := range r.du.Images {
		if u.HeldBy != "" {
			if images[u.HeldBy] == 0 {
				holders = append(holders, u.HeldBy)
			}
			images[u.HeldBy]++
		}
	}
	for _, l := range r.du.LayerUsage {
		for _, h := range l.HeldBy {
			layers[h]++
		}
	}
	slices.Sort(holders)
	var out []string
	for _, h := range holders {
		out = append(out, fmt.Sprintf("Held by %s: %s, %s (prune and rmi keep them)", h, count(images[h], "image"), count(layers[h], "layer")))
	}
	return out
}

// count is "1 image", "2 images".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return itoa(n) + " " + noun + "s"
}

// treesLine counts the tree files, which the objects line leaves out.
func (r *dfReport) treesLine() string {
	return fmt.Sprintf("Tree files: %d, %s on disk (merged trees of the chains mounted or built)", r.du.Trees, humanSize(r.du.TreesOnDisk, 4))
}

func (r *dfReport) verboseRows(trunc bool) dfVerbose {
	now := time.Now()
	var v dfVerbose
	usage := map[digest.Digest]layerstore.ImageUsage{}
	for _, u := range r.du.Images {
		usage[u.ID] = u
	}
	for _, img := range r.images {
		u := usage[img.ID]
		repo, tag := "<none>", "<none>"
		if len(img.RepoTags) > 0 { // docker shows the first tag only
			repo, tag = splitRepoTag(img.RepoTags[0])
		}
		created := img.Created()
		v.Images = append(v.Images, dfImageRow{
			CreatedAt:    time.Unix(created.Unix(), 0).String(),
			CreatedSince: createdSince(now, created),
			ID:           displayID(img.ID, !trunc),
			Mounts:       itoa(u.Mounts),
			Repository:   repo,
			SharedSize:   humanSize(u.SharedSize, 4),
			Size:         humanSize(img.Size, 3),
			Tag:          tag,
			UniqueSize:   humanSize(u.UniqueSize, 4),
		})
	}
	for _, c := range r.ctrs {
		row := containerRow(c, trunc, now)
		vols := 0
		for _, v := range c.Volumes {
			if v.Type == "volume" {
				vols++
			}
		}
		v.Containers = append(v.Containers, dfContainerRow{
			Command:      row.Command,
			CreatedAt:    row.CreatedAt,
			ID:           row.ID,
			Image:        row.Image,
			LocalVolumes: itoa(vols),
			Names:        row.Names,
			RunningFor:   row.RunningFor,
			Size:         humanSize(r.usage[c.MountID].Size, 3),
			Status:       row.Status,
		})
	}
	for _, vol := range r.vols {
		v.Volumes = append(v.Volumes, dfVolumeRow{Links: itoa(r.links[vol.Name]), Name: vol.Name, Size: humanSize(vol.Size, 3)})
	}
	for _, m := range r.mounts {
		u := r.usage[m.ID]
		status := fmt.Sprintf("live (pid %d)", m.PID)
		switch {
		case m.Keep && m.PID == 0:
			status = "stopped (kept for a restart)"
		case !u.Alive:
			status = "stale (server gone)"
		}
		image := m.Ref
		if image == "" {
			image = displayID(m.Image, !trunc)
		}
		v.Mounts = append(v.Mounts, dfMountRow{
			CreatedAt:    time.Unix(m.Created.Unix(), 0).String(),
			CreatedSince: createdSince(now, m.Created),
			Dir:          m.Dir,
			ID:           m.ID,
			Image:        image,
			Size:         humanSize(u.Size, 4),
			Status:       status,
		})
	}
	for _, l := range r.du.LayerUsage {
		held := strings.Join(l.HeldBy, ", ")
		if held == "" {
			held = "-"
		}
		v.Layers = append(v.Layers, dfLayerRow{
			HeldBy: held,
			ID:     displayID(l.DiffID, !trunc),
			Images: itoa(l.Images),
			Mounts: itoa(l.Mounts),
			Size:   humanSize(l.Size, 3),
		})
	}
	for _, t := range r.du.TreeUsage {
		v.Trees = append(v.Trees, dfTreeRow{
			Entries: itoa(t.Entries),
			ID:      displayID(t.ChainID, !trunc),
			Layers:  itoa(t.Layers),
			Size:    humanSize(t.Size, 3),
		})
	}
	return v
}

// writeVerbose prints docker's "df -v" sections: images, containers and
// local volumes, then mounts and layers, then the objects line; or executes
// format over all of them.
func (r *dfReport) writeVerbose(w io.Writer, format string) error {
	table := format == "" || format == tableFormatKey
	v := r.verboseRows(table)
	if !table {
		t, err := parseTemplate(format)
		if err != nil {
			return err
		}
		return execTemplate(t, w, v)
	}
	sections := []struct {
		title, format string
		columns       map[string]string
		rows          func(*rowFormatter) error
	}{
		{"Images space usage:", dfImageTableFormat, dfImageColumns, func(f *rowFormatter) error { return rowsOf(f, v.Images) }},
		{"Containers space usage:", dfContainerTableFormat, dfContainerColumns, func(f *rowFormatter) error { return rowsOf(f, v.Containers) }},
		{"Local Volumes space usage:", dfVolumeTableFormat, dfVolumeColumns, func(f *rowFormatter) error { return rowsOf(f, v.Volumes) }},
		{"Mounts space usage:", dfMountTableFormat, dfMountColumns, func(f *rowFormatter) error { return rowsOf(f, v.Mounts) }},
		{"Layers space usage:", dfLayerTableFormat, dfLayerColumns, func(f *rowFormatter) error { return rowsOf(f, v.Layers) }},
		{"Trees space usage:", dfTreeTableFormat, dfTreeColumns, func(f *rowFormatter) error { return rowsOf(f, v.Trees) }},
	}
	for i, sec := range sections {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s\n\n", sec.title)
		rf, err := newRowFormatter(sec.format, sec.columns)
		if err != nil {
			return err
		}
		if err := sec.rows(rf); err != nil {
			return err
		}
		if err := rf.flush(w); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, r.objectsLine())
	fmt.Fprintln(w, r.treesLine())
	for _, l := range r.heldLines() {
		fmt.Fprintln(w, l)
	}
	return nil
}

// itoa is strconv.Itoa, short for table cells.
func itoa(n int) string { return strconv.Itoa(n) }

func rowsOf[T any](f *rowFormatter, rows []T) error {
	for _, r := range rows {
		if err := f.row(r); err != nil {
			return err
		}
	}
	return nil
}
