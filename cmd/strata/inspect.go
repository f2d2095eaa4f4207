package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"text/template"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/layerstore"
)

type inspectOptions struct {
	format string
	// containers: a name that is a container's is inspected as one first,
	// as docker inspect does (strata inspect, not strata image inspect).
	containers bool
}

// imageInspect is docker 20.10's image inspect document (API 1.41), every
// field in its order, Container, ContainerConfig and VirtualSize included
// (later APIs deprecate them; scripts still use them). Go field names are the
// JSON keys, so --format templates name them as docker's do.
type imageInspect struct {
	Id              string // docker's key, not ID
	RepoTags        []string
	RepoDigests     []string
	Parent          string
	Comment         string
	Created         string
	Container       string
	ContainerConfig *containerConfig
	DockerVersion   string
	Author          string
	Config          *containerConfig
	Architecture    string
	Variant         string `json:",omitempty"`
	Os              string
	OsVersion       string `json:",omitempty"`
	Size            int64
	VirtualSize     int64 // = Size, as in docker 20.10
	GraphDriver     graphDriver
	RootFS          rootFS
	Metadata        imageMetadata
}

// containerConfig is docker's container.Config, the "config" of an image
// config: the keys are the same there, so it decodes the raw config as is.
type containerConfig struct {
	Hostname        string
	Domainname      string
	User            string
	AttachStdin     bool
	AttachStdout    bool
	AttachStderr    bool
	ExposedPorts    map[string]struct{} `json:",omitempty"`
	Tty             bool
	OpenStdin       bool
	StdinOnce       bool
	Env             []string
	Cmd             strSlice
	Healthcheck     *healthConfig `json:",omitempty"`
	ArgsEscaped     bool          `json:",omitempty"`
	Image           string
	Volumes         map[string]struct{}
	WorkingDir      string
	Entrypoint      strSlice
	NetworkDisabled bool   `json:",omitempty"`
	MacAddress      string `json:",omitempty"`
	OnBuild         []string
	Labels          map[string]string
	StopSignal      string   `json:",omitempty"`
	StopTimeout     *int     `json:",omitempty"`
	Shell           strSlice `json:",omitempty"`
}

type healthConfig struct {
	Test          []string      `json:",omitempty"`
	Interval      time.Duration `json:",omitempty"`
	Timeout       time.Duration `json:",omitempty"`
	StartPeriod   time.Duration `json:",omitempty"`
	StartInterval time.Duration `json:",omitempty"`
	Retries       int           `json:",omitempty"`
}

// strSlice is docker's strslice.StrSlice: a JSON array of strings, or one string.
type strSlice []string

func (s *strSlice) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || string(b) == "null" {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = strSlice{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

type graphDriver struct {
	Data map[string]string
	Name string
}

type rootFS struct {
	Type   string
	Layers []string `json:",omitempty"`
}

type imageMetadata struct {
	LastTagTime time.Time
}

// rawImageConfig holds the parts of an image config docker shows that
// ocispec.Image leaves out (comment, docker_version, container config keys).
type rawImageConfig struct {
	Created       *time.Time       `json:"created"`
	Author        string           `json:"author"`
	Comment       string           `json:"comment"`
	DockerVersion string           `json:"docker_version"`
	Architecture  string           `json:"architecture"`
	Variant       string           `json:"variant"`
	OS            string           `json:"os"`
	OSVersion     string           `json:"os.version"`
	Config        *containerConfig `json:"config"`
	// Set in images docker built or committed; zero elsewhere.
	Container       string           `json:"container"`
	ContainerConfig *containerConfig `json:"container_config"`
	History         []struct {
		Comment string `json:"comment"`
	} `json:"history"`
}

func newInspectCmd(g *globals, containers bool) *cobra.Command {
	o := &inspectOptions{containers: containers}
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER|IMAGE [CONTAINER|IMAGE...]",
		Short: "Display detailed information on one or more containers or images",
		Long: `Print a JSON array with docker's inspect document for each container (by name
or ID; "strata inspect" only) or IMAGE (name[:tag], ID or unique ID prefix). GraphDriver names strata and gives the
image's chain ID; Metadata.LastTagTime is when "strata tag" (or an import or
commit with a name) last named the image, zero after a load, as in docker.
Comment is the config's, else the last history entry's, as docker shows it.

-f/--format executes a Go template on each image instead, e.g. '{{.Id}}',
'{{json .Config}}'.`,
		Example: `  strata image inspect demo
  strata inspect -f '{{.Size}} {{json .RootFS.Layers}}' demo`,
		Args:              cobra.MinimumNArgs(1),
		GroupID:           "image",
		ValidArgsFunction: completeImages(g, -1, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd, g, o, args)
		},
	}
	cmd.Flags().StringVarP(&o.format, "format", "f", "", "format output using a Go template")
	return cmd
}

func runInspect(cmd *cobra.Command, g *globals, o *inspectOptions, refs []string) error {
	var tmpl *template.Template
	if o.format != "" {
		t, err := parseTemplate(o.format)
		if err != nil {
			return err
		}
		tmpl = t
	}
	s, c, err := g.openContainers()
	if err != nil {
		return err
	}
	defer s.Close()
	var (
		docs []any
		errs errorList
		out  = cmd.OutOrStdout()
	)
	for _, ref := range refs {
		var doc any
		if rec, cerr := c.Records().Get(ref); o.containers && cerr == nil {
			doc = inspectContainer(s.Root(), c, rec)
		} else {
			img, err := s.ResolveImage(ref)
			if errors.Is(err, layerstore.ErrNotFound) && o.containers {
				err = &noSuchObjectError{ref: ref, err: err} // neither a container nor an image
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if doc, err = inspectImage(img); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if tmpl != nil {
			var buf bytes.Buffer
			if err := execTemplate(tmpl, &buf, doc); err != nil {
				return err
			}
			buf.WriteByte('\n')
			if _, err := buf.WriteTo(out); err != nil {
				return err
			}
			continue
		}
		docs = append(docs, doc)
	}
	if tmpl == nil {
		if docs == nil {
			docs = []any{}
		}
		b, err := json.MarshalIndent(docs, "", "    ")
		if err != nil {
			return err
		}
		if _, err := out.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	return errs.join()
}

// inspectImage builds docker's inspect document of a stored image.
func inspectImage(img layerstore.Image) (imageInspect, error) {
	var raw rawImageConfig
	if err := json.Unmarshal(img.ConfigRaw, &raw); err != nil {
		return imageInspect{}, fmt.Errorf("image %s config: %w: %w", img.ID, err, layerstore.ErrCorrupt)
	}
	doc := imageInspect{
		Id:              img.ID.String(),
		RepoTags:        append([]string{}, img.RepoTags...),
		RepoDigests:     append([]string{}, img.RepoDigests...),
		Comment:         raw.Comment,
		DockerVersion:   raw.DockerVersion,
		Author:          raw.Author,
		Config:          raw.Config,
		Architecture:    raw.Architecture,
		Variant:         raw.Variant,
		Os:              raw.OS,
		OsVersion:       raw.OSVersion,
		Size:            img.Size,
		VirtualSize:     img.Size,
		Container:       raw.Container,
		ContainerConfig: raw.ContainerConfig,
		Metadata:        imageMetadata{LastTagTime: img.LastTagTime},
		GraphDriver: graphDriver{
			Name: "strata",
			Data: map[string]string{"LoadedAt": img.Loaded.Format(time.RFC3339Nano)},
		},
		RootFS: rootFS{Type: "layers"},
	}
	if doc.ContainerConfig == nil {
		doc.ContainerConfig = &containerConfig{}
	}
	if doc.Comment == "" && len(raw.History) > 0 {
		doc.Comment = raw.History[len(raw.History)-1].Comment
	}
	var created time.Time
	if raw.Created != nil {
		created = *raw.Created
	}
	doc.Created = created.Format(time.RFC3339Nano)
	if img.ChainID != "" {
		doc.GraphDriver.Data["ChainID"] = img.ChainID.String()
	}
	if img.ManifestDigest != "" {
		doc.GraphDriver.Data["ManifestDigest"] = img.ManifestDigest.String()
	}
	for _, l := range img.Layers {
		doc.RootFS.Layers = append(doc.RootFS.Layers, l.String())
	}
	return doc, nil
}

// noSuchObjectError is docker inspect's word for a name that is neither a
// container's nor an image's.
type noSuchObjectError struct {
	ref string
	err error
}

func (e *noSuchObjectError) Error() string { return "No such object: " + e.ref }
func (e *noSuchObjectError) Unwrap() error { return e.err }
