package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/layerstore"
)

// Options describe a build. The zero value (with Context) builds
// Context/Dockerfile's last stage, with the cache, RUN steps on a private
// network, and no names.
type Options struct {
	// Context is the build context directory; "" for none (a Dockerfile
	// alone: COPY and ADD of local files fail).
	Context string
	// Dockerfile is the Dockerfile's path. Default: Context/Dockerfile.
	Dockerfile string
	// DockerfileData, when set, is the Dockerfile itself (read from stdin);
	// Dockerfile then only names it in messages.
	DockerfileData []byte
	// Tags name the result (NAME[:TAG], through layerstore.ParseTag).
	Tags []string
	// BuildArgs are --build-arg values.
	BuildArgs map[string]string
	// Target is the stage to build. Default: the last.
	Target string
	// NoCache runs every step, ignoring (but refreshing) the cache.
	NoCache bool
	// Network is the RUN steps' network: container.NetworkPrivate (the
	// default), NetworkHost or NetworkNone; RUN --network overrides it.
	Network string
	// Labels are set on the result (--label).
	Labels map[string]string
	// Runtime runs RUN steps. Default: runc with strata's state root.
	Runtime *container.Runtime
	// Progress receives BuildKit's plain progress. Default: discard.
	Progress io.Writer
}

// Build builds an image in st as o says and returns it. A build that
// fails leaves no image of its own (the steps before the failure stay in
// the cache), no mount and no lease.
func Build(ctx context.Context, st *layerstore.Store, o Options) (layerstore.Image, error) {
	b := &builder{st: st, o: o, out: o.Progress, stages: map[string]*stageState{}}
	if b.out == nil {
		b.out = io.Discard
	}
	if b.o.Runtime == nil {
		b.o.Runtime = &container.Runtime{}
	}
	if b.o.Network == "" {
		b.o.Network = container.NetworkPrivate
	}
	defer func() {
		for _, f := range b.temps {
			f.Close()
		}
	}()
	reapOrphans(st)
	if err := b.load(); err != nil {
		return layerstore.Image{}, err
	}
	return b.build(ctx)
}

type builder struct {
	st       *layerstore.Store
	o        Options
	out      io.Writer
	file     string // the Dockerfile's name in messages
	df       *dockerfile
	lex      *shell.Lex
	ctxDir   *contextDir
	globals  []kv // ARGs before the first FROM, with --build-arg applied
	stages   map[string]*stageState
	vertex   int
	usedArgs map[string]bool
	temps    []*os.File // spooled ADD contents, closed when the build ends
}

type kv struct{ k, v string }

// readDockerfile reads p; one inside the context is read through an
// os.Root of it, so a Dockerfile that is a symlink cannot name a file
// outside the context (a context can come from anyone, a tar on stdin).
func readDockerfile(context, p string) ([]byte, error) {
	if context != "" {
		if rel, err := filepath.Rel(context, p); err == nil && filepath.IsLocal(rel) {
			root, err := os.OpenRoot(context)
			if err != nil {
				return nil, err
			}
			defer root.Close()
			return root.ReadFile(rel)
		}
	}
	return os.ReadFile(p)
}

func (b *builder) load() error {
	b.file = "Dockerfile"
	data := b.o.DockerfileData
	if data == nil {
		p := b.o.Dockerfile
		if p == "" {
			if b.o.Context == "" {
				return fmt.Errorf("no Dockerfile and no build context: %w", layerstore.ErrInvalid)
			}
			p = filepath.Join(b.o.Context, "Dockerfile")
		}
		b.file = filepath.Base(p)
		t0 := time.Now()
		var err error
		if data, err = readDockerfile(b.o.Context, p); err != nil {
			return fmt.Errorf("read Dockerfile: %w", err)
		}
		b.vertexDone("[internal] load build definition from "+b.file, t0, fmt.Sprintf("transferring dockerfile: %dB done", len(data)))
	} else if b.o.Dockerfile != "" {
		b.file = filepath.Base(b.o.Dockerfile)
	}
	df, err := parse(b.file, data)
	if err != nil {
		return err
	}
	b.df = df
	b.lex = shell.NewLex(df.escape)
	if b.o.Context != "" {
		t0 := time.Now()
		if b.ctxDir, err = loadContext(b.o.Context); err != nil {
			return err
		}
		b.vertexDone("[internal] load build context", t0, fmt.Sprintf("transferring context: %d files done", len(b.ctxDir.list)))
	}
	b.usedArgs = map[string]bool{}
	for _, a := range df.metaArgs {
		for _, arg := range a.Args {
			v, ok := b.o.BuildArgs[arg.Key]
			if ok {
				b.usedArgs[arg.Key] = true
			} else if arg.Value != nil {
				if v, _, err = b.lex.ProcessWord(*arg.Value, b.globalEnv()); err != nil {
					return b.at(&a, err)
				}
			} else {
				continue
			}
			b.globals = append(b.globals, kv{arg.Key, v})
		}
	}
	return nil
}

// stageState is a stage being built: the last image stored for it, and
// what the instructions since have done to its config.
type stageState struct {
	index    int
	name     string
	img      *layerstore.Image // nil: scratch, nothing stored yet
	cfg      ocispec.Image
	extra    imageExtra
	pending  bool   // instructions since img changed the config
	key      string // cache key of everything so far
	env      []kv   // what RUN and expansion see: the config's Env and ARGs
	args     []kv   // ARGs in scope, for RUN's record
	step     int
	total    int
	built    *layerstore.Image
	building bool
	// cmdInStage: this stage set CMD (an ENTRYPOINT after keeps it).
	cmdInStage bool
}

// imageExtra is what docker's image config has and ocispec's has not.
type imageExtra struct {
	Healthcheck json.RawMessage `json:"Healthcheck,omitempty"`
	OnBuild     []string        `json:"OnBuild,omitempty"`
	Shell       []string        `json:"Shell,omitempty"`
}

func (b *builder) build(ctx context.Context) (layerstore.Image, error) {
	target := len(b.df.stages) - 1
	if b.o.Target != "" {
		target = -1
		for i, s := range b.df.stages {
			if strings.EqualFold(s.Name, b.o.Target) {
				target = i
			}
		}
		if target < 0 {
			return layerstore.Image{}, fmt.Errorf("target stage %q could not be found: %w", b.o.Target, layerstore.ErrNotFound)
		}
	}
	img, err := b.stage(ctx, target)
	if err != nil {
		return layerstore.Image{}, err
	}
	var unused []string
	for k := range b.o.BuildArgs {
		if !b.usedArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(b.out, "[Warning] One or more build-args [%s] were not consumed\n", strings.Join(unused, " "))
	}
	return b.export(img)
}

// export gives the result its labels and names.
func (b *builder) export(img *layerstore.Image) (layerstore.Image, error) {
	t0 := time.Now()
	b.vertex++
	n := b.vertex
	fmt.Fprintf(b.out, "#%d exporting to image\n", n)
	res := *img
	if len(b.o.Labels) > 0 {
		keys := make([]string, 0, len(b.o.Labels))
		for k := range b.o.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+b.o.Labels[k])
		}
		key := cacheKey(string(img.ID), "LABELS "+strings.Join(parts, " "))
		got, err := b.cached(key)
		if err != nil {
			return layerstore.Image{}, err
		}
		if got == nil {
			cfg := img.Config
			if cfg.Config.Labels == nil {
				cfg.Config.Labels = map[string]string{}
			}
			for k, v := range b.o.Labels {
				cfg.Config.Labels[k] = v
			}
			nimg, err := b.st.NewImage(context.Background(), layerstore.NewImageOptions{
				Base: img,
				Edit: func(c *ocispec.Image) error {
					c.Config.Labels = cfg.Config.Labels
					c.History = img.Config.History
					return nil
				},
			})
			if err != nil {
				return layerstore.Image{}, err
			}
			if err := b.st.CachePut(key, nimg.ID); err != nil {
				return layerstore.Image{}, err
			}
			got = &nimg
		}
		res = *got
	}
	fmt.Fprintf(b.out, "#%d writing image %s done\n", n, res.ID)
	for _, t := range b.o.Tags {
		name, err := layerstore.ParseTag(t)
		if err != nil {
			return layerstore.Image{}, err
		}
		if err := b.st.Tag(string(res.ID), name); err != nil {
			return layerstore.Image{}, err
		}
		fmt.Fprintf(b.out, "#%d naming to %s done\n", n, name)
	}
	fmt.Fprintf(b.out, "#%d DONE %.1fs\n\n", n, time.Since(t0).Seconds())
	return b.st.ResolveImage(string(res.ID))
}

// cached returns the image the cache holds for key, nil if none (or
// NoCache).
func (b *builder) cached(key string) (*layerstore.Image, error) {
	if b.o.NoCache {
		return nil, nil
	}
	img, err := b.st.CacheGet(key)
	if errors.Is(err, layerstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &img, nil
}

// cacheKey chains a step onto the key of what came before it.
func cacheKey(parent string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(parent))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// at names the instruction an error is about.
func (b *builder) at(cmd instructions.Command, err error) error {
	line := 0
	if loc := cmd.Location(); len(loc) > 0 {
		line = loc[0].Start.Line
	}
	return &StepError{File: b.file, Line: line, Step: fmt.Sprint(cmd), Err: err}
}

// StepError is an instruction that failed.
type StepError struct {
	File string
	Line int
	Step string // the instruction, with its place: "[2/4] RUN make"
	Err  error
	// Code is a failed RUN's exit status (0 otherwise); Output its last
	// lines.
	Code   int
	Output string
}

func (e *StepError) Error() string {
	s := fmt.Sprintf("%s:%d: %s: %v", e.File, e.Line, e.Step, e.Err)
	if e.Output != "" {
		s += "\n" + strings.TrimRight(e.Output, "\n")
	}
	return s
}

func (e *StepError) Unwrap() error { return e.Err }

func (b *builder) globalEnv() shell.EnvGetter {
	var env []string
	for _, a := range b.globals {
		env = append(env, a.k+"="+a.v)
	}
	return shell.EnvsFromSlice(env)
}

func envGetter(kvs []kv) shell.EnvGetter {
	env := make([]string, 0, len(kvs))
	for _, a := range kvs {
		env = append(env, a.k+"="+a.v)
	}
	return shell.EnvsFromSlice(env)
}

func setKV(kvs []kv, k, v string) []kv {
	for i := range kvs {
		if kvs[i].k == k {
			kvs[i].v = v
			return kvs
		}
	}
	return append(kvs, kv{k, v})
}

func (b *builder) vertexDone(name string, t0 time.Time, lines ...string) {
	b.vertex++
	fmt.Fprintf(b.out, "#%d %s\n", b.vertex, name)
	for _, l := range lines {
		fmt.Fprintf(b.out, "#%d %s\n", b.vertex, l)
	}
	fmt.Fprintf(b.out, "#%d DONE %.1fs\n\n", b.vertex, time.Since(t0).Seconds())
}
