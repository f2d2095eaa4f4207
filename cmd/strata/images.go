package main

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
)

type imagesOptions struct {
	all     bool
	quiet   bool
	noTrunc bool
	digests bool
	format  string
	filters filterFlag
}

const (
	imagesTableFormat           = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
	imagesTableFormatWithDigest = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
)

// imageColumns are the header names of imageRow's fields.
var imageColumns = map[string]string{
	"ID":           "IMAGE ID",
	"Repository":   "REPOSITORY",
	"Tag":          "TAG",
	"Digest":       "DIGEST",
	"CreatedSince": "CREATED",
	"CreatedAt":    "CREATED AT",
	"Size":         "SIZE",
	"Containers":   "CONTAINERS",
	"VirtualSize":  "SIZE",
	"SharedSize":   "SHARED SIZE",
	"UniqueSize":   "UNIQUE SIZE",
}

// imageRow is one line of "strata images": one per tag of an image. The
// fields are docker's, in the order its {{json .}} prints them; Containers,
// SharedSize and UniqueSize are "N/A" as in docker's list (strata has no
// containers; see "strata system df -v" for the shares).
type imageRow struct {
	Containers   string
	CreatedAt    string
	CreatedSince string
	Digest       string
	ID           string
	Repository   string
	SharedSize   string
	Size         string
	Tag          string
	UniqueSize   string
	VirtualSize  string
}

func (r imageRow) MarshalJSON() ([]byte, error) {
	return marshalRow(r)
}

func newImagesCmd(g *globals) *cobra.Command {
	o := &imagesOptions{}
	cmd := &cobra.Command{
		Use:   "images [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Long: `List images, newest first, one line per tag; an image without tags shows as <none>.

Filters (-f, repeatable; filters of the same name are ORed, except label, which
must all match):
  dangling=true|false   images without / with tags
  reference=PATTERN     tags matching a shell pattern, against name:tag or name
  before=IMAGE          images created before IMAGE
  since=IMAGE           images created after IMAGE
  label=KEY[=VALUE]     images whose config has the label

--format takes a Go template over .ID .Repository .Tag .Digest .CreatedSince
.CreatedAt .Size; "table TEMPLATE" adds a header row and aligns columns, "json"
prints each row as JSON.`,
		Example: `  strata images
  strata images demo
  strata images -f dangling=true -q
  strata images --format 'table {{.Repository}}:{{.Tag}}\t{{.Size}}'`,
		Args:              cobra.MaximumNArgs(1),
		GroupID:           "image",
		ValidArgsFunction: completeImages(g, 1, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImages(cmd, g, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "show all images (default hides intermediate images: untagged ones only the build cache holds)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show image IDs")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.BoolVar(&o.digests, "digests", false, "show digests")
	f.StringVar(&o.format, "format", "", "format output using a Go template, \"table TEMPLATE\" or \"json\"")
	f.VarP(&o.filters, "filter", "f", "filter output based on conditions provided (dangling, reference, before, since, label)")
	return cmd
}

func runImages(cmd *cobra.Command, g *globals, o *imagesOptions, args []string) error {
	filters, err := parseFilters(o.filters, "dangling", "reference", "before", "since", "label")
	if err != nil {
		return err
	}
	if len(args) == 1 {
		if err := checkRefPattern(args[0]); err != nil {
			return err
		}
		filters["reference"] = append(filters["reference"], args[0])
	}
	format := o.format
	switch {
	case (format == "" || format == tableFormatKey) && o.quiet:
		format = quietFormat
	case (format == "" || format == tableFormatKey) && o.digests:
		format = imagesTableFormatWithDigest
	case format == "" || format == tableFormatKey:
		format = imagesTableFormat
	case strings.HasPrefix(format, tableFormatKey) && o.digests && !strings.Contains(format, "{{.Digest}}"):
		format += "\t{{.Digest}}"
	}
	rf, err := newRowFormatter(format, imageColumns)
	if err != nil {
		return err
	}
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	imgs, err := s.Images()
	if err != nil {
		return err
	}
	imgs, err = filterImages(s, imgs, filters)
	if err != nil {
		return err
	}
	if !o.all {
		cached, err := s.CacheImages()
		if err != nil {
			return err
		}
		imgs = slices.DeleteFunc(imgs, func(img layerstore.Image) bool { return len(img.RepoTags) == 0 && cached[img.ID] })
	}
	showDigest := o.digests || strings.Contains(format, "{{.Digest}}")
	now := time.Now()
	for _, img := range imgs {
		for _, r := range imageRows(img, !o.noTrunc, showDigest, now) {
			if err := rf.row(r); err != nil {
				return err
			}
		}
	}
	return rf.flush(cmd.OutOrStdout())
}

// imageRows are the lines of one image: one per tag (per tag and digest
// when digests are shown), or a single <none> line.
func imageRows(img layerstore.Image, trunc, showDigest bool, now time.Time) []imageRow {
	created := img.Created()
	base := imageRow{
		Containers:   "N/A",
		CreatedAt:    time.Unix(created.Unix(), 0).String(),
		CreatedSince: createdSince(now, created),
		ID:           displayID(img.ID, !trunc),
		SharedSize:   "N/A",
		Size:         humanSize(img.Size, 3),
		UniqueSize:   "N/A",
		VirtualSize:  humanSize(img.Size, 4),
	}
	if len(img.RepoTags) == 0 && len(img.RepoDigests) == 0 {
		r := base
		r.Repository, r.Tag, r.Digest = "<none>", "<none>", "<none>"
		return []imageRow{r}
	}
	digests := map[string][]string{}
	var repos []string
	for _, rd := range img.RepoDigests {
		if repo, d, ok := strings.Cut(rd, "@"); ok {
			if digests[repo] == nil {
				repos = append(repos, repo)
			}
			digests[repo] = append(digests[repo], d)
		}
	}
	var rows []imageRow
	// A repository the image has a digest in but no tag (a pull by
	// digest) gets a row of its own, as in docker.
	tagged := map[string]bool{}
	for _, t := range img.RepoTags {
		repo, _ := splitRepoTag(t)
		tagged[repo] = true
	}
	for _, repo := range repos {
		if tagged[repo] {
			continue
		}
		ds := digests[repo]
		if !showDigest {
			ds = ds[:1]
		}
		for _, d := range ds {
			r := base
			r.Repository, r.Tag, r.Digest = repo, "<none>", d
			if !showDigest {
				r.Digest = "<none>"
			}
			rows = append(rows, r)
		}
	}
	for _, t := range img.RepoTags {
		repo, tag := splitRepoTag(t)
		ds := digests[repo]
		if !showDigest || len(ds) == 0 {
			ds = []string{"<none>"}
		}
		for _, d := range ds {
			r := base
			r.Repository, r.Tag, r.Digest = repo, tag, d
			rows = append(rows, r)
		}
	}
	return rows
}

// splitRepoTag splits a stored name into repository and tag; a name
// without a tag (a digest reference) has the tag <none>.
func splitRepoTag(ref string) (repo, tag string) {
	repo, tag = layerstore.SplitRef(ref)
	if tag == "" {
		tag = "<none>"
	}
	return repo, tag
}

// filterFlag is docker's -f/--filter: NAME=VALUE, repeatable; a value
// without "=" is refused as the flag is parsed.
type filterFlag []string

func (f *filterFlag) String() string { return strings.Join(*f, ",") }
func (f *filterFlag) Type() string   { return "filter" }
func (f *filterFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return errors.New("bad format of filter (expected name=value)")
	}
	*f = append(*f, v)
	return nil
}

// parseFilters groups NAME=VALUE filters by name, allowing only the names
// given. The message is docker's.
func parseFilters(args []string, allowed ...string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("Invalid filter '%s'", k)
		}
		out[k] = append(out[k], strings.TrimSpace(v))
	}
	return out, nil
}

// filterImages applies docker's image filters. A reference filter keeps only
// the matching tags of an image.
func filterImages(s *layerstore.Store, imgs []layerstore.Image, filters map[string][]string) ([]layerstore.Image, error) {
	var dangling *bool
	if vs, ok := filters["dangling"]; ok {
		b, err := filterBool("dangling", vs)
		if err != nil {
			return nil, err
		}
		dangling = &b
	}
	var before, after *time.Time
	for _, f := range []struct {
		name string
		t    **time.Time
	}{{"before", &before}, {"since", &after}} {
		for _, ref := range filters[f.name] {
			img, err := s.ResolveImage(ref)
			if err != nil {
				return nil, err
			}
			c := img.Created()
			*f.t = &c
		}
	}
	patterns := filters["reference"]
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("Invalid filter 'reference=%s': %w", p, err)
		}
	}
	var out []layerstore.Image
	for _, img := range imgs {
		if dangling != nil && (len(img.RepoTags) == 0) != *dangling {
			continue
		}
		if before != nil && !img.Created().Before(*before) {
			continue
		}
		if after != nil && !img.Created().After(*after) {
			continue
		}
		if !matchLabels(img.Config.Config.Labels, filters["label"]) {
			continue
		}
		if len(patterns) > 0 {
			var tags []string
			for _, t := range img.RepoTags {
				if matchReference(patterns, t) {
					tags = append(tags, t)
				}
			}
			if len(tags) == 0 {
				continue
			}
			img.RepoTags = tags
		}
		out = append(out, img)
	}
	return out, nil
}

// filterBool reads a boolean filter as docker does: true/1 or false/0.
func filterBool(name string, vs []string) (bool, error) {
	for _, v := range vs {
		switch {
		case strings.EqualFold(v, "true") || v == "1":
			return true, nil
		case strings.EqualFold(v, "false") || v == "0":
			return false, nil
		}
	}
	return false, fmt.Errorf("Invalid filter '%s=%v'", name, vs)
}

// matchReference matches name:tag, then the name alone, against the shell
// patterns (docker's reference.FamiliarMatch).
func matchReference(patterns []string, ref string) bool {
	repo, _ := splitRepoTag(ref)
	for _, p := range patterns {
		if ok, _ := path.Match(p, ref); ok {
			return true
		}
		if ok, _ := path.Match(p, repo); ok {
			return true
		}
	}
	return false
}

// matchLabels reports whether labels has every KEY or KEY=VALUE of want.
func matchLabels(labels map[string]string, want []string) bool {
	for _, w := range want {
		k, v, hasValue := strings.Cut(w, "=")
		got, ok := labels[k]
		if !ok || (hasValue && got != v) {
			return false
		}
	}
	return true
}

// globRE matches what a shell pattern may hold in place of name characters.
var globRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\*+|\?|\[[^\]]*\]`) })

// checkRefPattern refuses a REPOSITORY[:TAG] argument no image name could
// match ("bad::name"), rather than listing nothing: each run of pattern
// characters stands for a name character, and the rest must be a reference.
func checkRefPattern(p string) error {
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("invalid reference pattern %q: %w: %w", p, err, layerstore.ErrInvalid)
	}
	probe := globRE().ReplaceAllString(p, "a")
	if _, err := layerstore.NormalizeRef(probe); err != nil {
		if probe == p {
			return err
		}
		return fmt.Errorf("invalid reference pattern %q: no image name can match it: %w", p, err)
	}
	return nil
}
