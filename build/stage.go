package build

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/layerstore"
)

const historyComment = "buildkit.dockerfile.v0"

// stageByName finds a stage by name or index, -1 if none.
func (b *builder) stageByName(name string) int {
	for i, s := range b.df.stages {
		if strings.EqualFold(s.Name, name) {
			return i
		}
	}
	var n int
	if _, err := fmt.Sscanf(name, "%d", &n); err == nil && fmt.Sprint(n) == name && n >= 0 && n < len(b.df.stages) {
		return n
	}
	return -1
}

// stage builds stage i (and the stages it needs first) and returns its
// image.
func (b *builder) stage(ctx context.Context, i int) (*layerstore.Image, error) {
	if s := b.stages[fmt.Sprint(i)]; s != nil {
		if s.building {
			return nil, fmt.Errorf("stage %d depends on itself: %w", i, layerstore.ErrInvalid)
		}
		return s.built, nil
	}
	st := b.df.stages[i]
	s := &stageState{index: i, name: st.Name, building: true}
	b.stages[fmt.Sprint(i)] = s
	// The stages this one needs, first, as BuildKit solves them.
	base, err := b.lex.ProcessWordWithMatches(st.BaseName, b.globalEnv())
	if err != nil {
		return nil, b.at(&fromCmd{st}, err)
	}
	from := base.Result
	if st.Platform != "" {
		p, err := b.lex.ProcessWordWithMatches(st.Platform, b.globalEnv())
		if err != nil {
			return nil, b.at(&fromCmd{st}, err)
		}
		if want := "linux/" + goarch(); p.Result != want && p.Result != "$BUILDPLATFORM" && p.Result != "$TARGETPLATFORM" {
			return nil, b.at(&fromCmd{st}, fmt.Errorf("--platform=%s: strata builds for %s only", p.Result, want))
		}
	}
	fromStage := -1
	if j := b.stageByName(from); j >= 0 && j < i {
		fromStage = j
	}
	for _, c := range st.Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
			if j := b.stageByName(cp.From); j >= 0 {
				if j >= i {
					return nil, b.at(cp, fmt.Errorf("stage %q is not defined before this one", cp.From))
				}
				if _, err := b.stage(ctx, j); err != nil {
					return nil, err
				}
			}
		}
	}
	var img *layerstore.Image
	if fromStage >= 0 {
		if img, err = b.stage(ctx, fromStage); err != nil {
			return nil, err
		}
	}
	for _, c := range st.Commands {
		switch c.(type) {
		case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
			s.total++
		}
	}
	s.total++ // FROM
	t0 := time.Now()
	n := b.begin(s, "FROM "+from)
	switch {
	case img != nil:
		s.key = cacheKey("stage", string(img.ID))
	case strings.EqualFold(from, "scratch"):
		s.cfg = ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: goarch()}, RootFS: ocispec.RootFS{Type: "layers"}}
		s.key = cacheKey("scratch")
	default:
		got, err := b.st.ResolveImage(from)
		if err != nil {
			return nil, b.at(&fromCmd{st}, fmt.Errorf("base image %s: %w (strata build uses images in the store: strata load or import it first)", from, err))
		}
		img = &got
		s.key = cacheKey("image", string(img.ID))
	}
	if img != nil {
		s.img = img
		if err := s.setConfig(img); err != nil {
			return nil, err
		}
	}
	b.end(n, t0)
	for _, e := range s.cfg.Config.Env {
		k, v, _ := strings.Cut(e, "=")
		s.env = setKV(s.env, k, v)
	}
	// ONBUILD triggers of the base run first, and go.
	cmds := st.Commands
	if len(s.extra.OnBuild) > 0 {
		var trig []instructions.Command
		for _, t := range s.extra.OnBuild {
			res, err := parser.Parse(strings.NewReader(t))
			if err != nil {
				return nil, fmt.Errorf("ONBUILD %s: %w", t, err)
			}
			for _, node := range res.AST.Children {
				c, err := instructions.ParseCommand(node)
				if err != nil {
					return nil, fmt.Errorf("ONBUILD %s: %w", t, err)
				}
				trig = append(trig, c)
				switch c.(type) {
				case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
					s.total++
				}
			}
		}
		s.extra.OnBuild = nil
		s.pending = true
		s.key = cacheKey(s.key, "ONBUILD consumed")
		cmds = append(trig, cmds...)
	}
	for _, c := range cmds {
		if err := b.dispatch(ctx, s, c); err != nil {
			var se *StepError
			if errors.As(err, &se) {
				return nil, err
			}
			return nil, b.at(c, err)
		}
	}
	out, err := b.commitConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	s.built, s.building = out, false
	return out, nil
}

type fromCmd struct{ st instructions.Stage }

func (f *fromCmd) Name() string             { return "from" }
func (f *fromCmd) Location() []parser.Range { return f.st.Location }
func (f *fromCmd) Comments() []string       { return nil }
func (f *fromCmd) String() string           { return f.st.SourceCode }

func (s *stageState) setConfig(img *layerstore.Image) error {
	s.cfg = img.Config
	var raw struct {
		Config imageExtra `json:"config"`
	}
	if err := json.Unmarshal(img.ConfigRaw, &raw); err != nil {
		return fmt.Errorf("image %s config: %w: %w", img.ID, err, layerstore.ErrCorrupt)
	}
	s.extra = raw.Config
	return nil
}

// begin prints a step's header and returns its vertex number.
func (b *builder) begin(s *stageState, text string) int {
	s.step++
	b.vertex++
	label := ""
	if len(b.df.stages) > 1 {
		label = s.name
		if label == "" {
			label = fmt.Sprintf("stage-%d", s.index)
		}
		label += " "
	}
	fmt.Fprintf(b.out, "#%d [%s%d/%d] %s\n", b.vertex, label, s.step, s.total, text)
	return b.vertex
}

func (b *builder) end(n int, t0 time.Time) {
	fmt.Fprintf(b.out, "#%d DONE %.1fs\n\n", n, time.Since(t0).Seconds())
}

func (b *builder) endCached(n int) { fmt.Fprintf(b.out, "#%d CACHED\n\n", n) }

// history adds a history entry to the config being built.
func (s *stageState) history(createdBy string, layer bool) {
	now := time.Now().UTC()
	s.cfg.History = append(s.cfg.History, ocispec.History{Created: &now, CreatedBy: createdBy, Comment: historyComment, EmptyLayer: !layer})
	s.pending = true
}

func (b *builder) expand(s *stageState, word string) (string, error) {
	r, _, err := b.lex.ProcessWord(word, envGetter(s.env))
	return r, err
}

// dispatch runs one instruction.
func (b *builder) dispatch(ctx context.Context, s *stageState, c instructions.Command) error {
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if err := ex.Expand(func(w string) (string, error) { return b.expand(s, w) }); err != nil {
			return err
		}
	}
	cfg := &s.cfg.Config
	switch c := c.(type) {
	case *instructions.EnvCommand:
		msg := "ENV"
		for _, e := range c.Env {
			msg += " " + e.String()
			cfg.Env = setEnv(cfg.Env, e.Key, e.Value)
			s.env = setKV(s.env, e.Key, e.Value)
		}
		return b.meta(s, msg)
	case *instructions.MaintainerCommand:
		s.cfg.Author = c.Maintainer
		return b.meta(s, "MAINTAINER "+c.Maintainer)
	case *instructions.LabelCommand:
		msg := "LABEL"
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, l := range c.Labels {
			cfg.Labels[l.Key] = l.Value
			msg += " " + l.String()
		}
		return b.meta(s, msg)
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			e, err := b.expand(s, p)
			if err != nil {
				return err
			}
			ports = append(ports, strings.Fields(e)...)
		}
		keys, err := parsePorts(ports)
		if err != nil {
			return err
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range keys {
			cfg.ExposedPorts[p] = struct{}{}
		}
		sort.Strings(keys)
		return b.meta(s, fmt.Sprintf("EXPOSE %v", mapOf(keys)))
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return fmt.Errorf("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
		return b.meta(s, fmt.Sprintf("VOLUME %v", c.Volumes))
	case *instructions.UserCommand:
		cfg.User = c.User
		return b.meta(s, "USER "+c.User)
	case *instructions.StopSignalCommand:
		if _, err := container.ParseSignal(c.Signal); err != nil {
			return err
		}
		cfg.StopSignal = c.Signal
		return b.meta(s, "STOPSIGNAL "+c.Signal)
	case *instructions.ShellCommand:
		s.extra.Shell = c.Shell
		return b.meta(s, fmt.Sprintf("SHELL %v", c.Shell))
	case *instructions.OnbuildCommand:
		s.extra.OnBuild = append(s.extra.OnBuild, c.Expression)
		s.pending = true
		s.key = cacheKey(s.key, "ONBUILD "+c.Expression)
		return nil
	case *instructions.HealthCheckCommand:
		h, err := json.Marshal(c.Health)
		if err != nil {
			return err
		}
		s.extra.Healthcheck = h
		return b.meta(s, fmt.Sprintf("HEALTHCHECK %+v", *c.Health))
	case *instructions.CmdCommand:
		args := c.CmdLine
		if c.PrependShell {
			args = s.withShell(args)
		}
		cfg.Cmd = args
		cfg.ArgsEscaped = true
		s.cmdInStage = true
		return b.meta(s, fmt.Sprintf("CMD %q", args))
	case *instructions.EntrypointCommand:
		args := c.CmdLine
		if c.PrependShell {
			args = s.withShell(args)
		}
		cfg.Entrypoint = args
		if !s.cmdSet(c) {
			cfg.Cmd = nil
		}
		return b.meta(s, fmt.Sprintf("ENTRYPOINT %q", args))
	case *instructions.ArgCommand:
		return b.arg(s, c)
	case *instructions.WorkdirCommand:
		return b.workdir(ctx, s, c)
	case *instructions.RunCommand:
		return b.run(ctx, s, c)
	case *instructions.CopyCommand:
		return b.copy(ctx, s, copyArgs{cmd: c, name: "COPY", sd: c.SourcesAndDest, from: c.From, chown: c.Chown, chmod: c.Chmod, parents: c.Parents, exclude: c.ExcludePatterns, link: c.Link})
	case *instructions.AddCommand:
		if c.Unpack != nil || c.KeepGitDir != nil {
			return fmt.Errorf("ADD --unpack and --keep-git-dir are not supported by strata build")
		}
		return b.copy(ctx, s, copyArgs{cmd: c, name: "ADD", sd: c.SourcesAndDest, chown: c.Chown, chmod: c.Chmod, add: true, exclude: c.ExcludePatterns, checksum: c.Checksum, link: c.Link})
	default:
		return fmt.Errorf("instruction %s is not supported", c.Name())
	}
}

// cmdSet reports whether this stage set CMD before ENTRYPOINT c (docker
// keeps such a CMD, and drops the base's).
func (s *stageState) cmdSet(instructions.Command) bool { return s.cmdInStage }

// parsePorts reads EXPOSE's PORT[/PROTO] and START-END[/PROTO] into
// "PORT/proto" keys, sorted.
func parsePorts(specs []string) ([]string, error) {
	seen := map[string]bool{}
	for _, sp := range specs {
		p, proto, ok := strings.Cut(sp, "/")
		if !ok {
			proto = "tcp"
		}
		proto = strings.ToLower(proto)
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			return nil, fmt.Errorf("invalid proto: %s", proto)
		}
		lo, hi, isRange := strings.Cut(p, "-")
		var a, z int
		if _, err := fmt.Sscanf(lo, "%d", &a); err != nil || fmt.Sprint(a) != lo || a < 0 || a > 65535 {
			return nil, fmt.Errorf("invalid containerPort: %s", p)
		}
		z = a
		if isRange {
			if _, err := fmt.Sscanf(hi, "%d", &z); err != nil || fmt.Sprint(z) != hi || z < a || z > 65535 {
				return nil, fmt.Errorf("invalid containerPort: %s", p)
			}
		}
		for i := a; i <= z; i++ {
			seen[fmt.Sprintf("%d/%s", i, proto)] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

func mapOf(keys []string) string {
	var b bytes.Buffer
	b.WriteString("map[")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + ":{}")
	}
	b.WriteString("]")
	return b.String()
}

func (s *stageState) withShell(args []string) []string {
	sh := s.extra.Shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(append([]string{}, sh...), strings.Join(args, " "))
}

// meta records an instruction that changes only the config.
func (b *builder) meta(s *stageState, createdBy string) error {
	s.history(createdBy, false)
	s.key = cacheKey(s.key, createdBy)
	return nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

func (b *builder) arg(s *stageState, c *instructions.ArgCommand) error {
	var parts []string
	for _, a := range c.Args {
		v, has := b.o.BuildArgs[a.Key]
		if has {
			b.usedArgs[a.Key] = true
		} else if a.Value != nil {
			var err error
			if v, err = b.expand(s, *a.Value); err != nil {
				return err
			}
			has = true
		} else {
			for _, g := range b.globals {
				if g.k == a.Key {
					v, has = g.v, true
				}
			}
		}
		part := a.Key
		s.args = setKV(s.args, a.Key, v) // BuildKit records "K=" for an ARG without a value
		if has {
			part += "=" + v
			if _, isEnv := envKey(s.cfg.Config.Env, a.Key); !isEnv {
				s.env = setKV(s.env, a.Key, v)
			}
		}
		parts = append(parts, part)
	}
	return b.meta(s, "ARG "+strings.Join(parts, " "))
}

func envKey(env []string, k string) (string, bool) {
	for _, e := range env {
		if ek, v, _ := strings.Cut(e, "="); ek == k {
			return v, true
		}
	}
	return "", false
}

// absPath makes p absolute against the working directory.
func (s *stageState) absPath(p string) string {
	if path.IsAbs(p) {
		return p
	}
	wd := s.cfg.Config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	trailing := strings.HasSuffix(p, "/") || p == "."
	out := path.Join(wd, p)
	if trailing && out != "/" {
		out += "/"
	}
	return out
}
