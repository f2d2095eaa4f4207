package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// run runs RUN in a container whose root is a mount of the stage's image
// so far, under the container runtime strata run uses; the mount's top
// layer becomes the step's layer through the commit path.
func (b *builder) run(ctx context.Context, s *stageState, c *instructions.RunCommand) error {
	if len(instructions.GetMounts(c)) > 0 {
		return fmt.Errorf("RUN --mount is not supported by strata build")
	}
	if sec := instructions.GetSecurity(c); sec != "" && sec != "sandbox" {
		return fmt.Errorf("RUN --security=%s is not supported by strata build", sec)
	}
	for _, f := range c.FlagsUsed {
		if f != "network" && f != "mount" && f != "security" {
			return fmt.Errorf("RUN --%s is not supported by strata build", f)
		}
	}
	args := c.CmdLine
	var script *instructions.ShellInlineFile
	display := c.String()
	if len(c.Files) > 0 {
		if h := parser.MustParseHeredoc(args[0]); h != nil && len(args) == 1 {
			data := c.Files[0].Data
			if c.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				f := c.Files[0]
				f.Data = data
				script = &f
				args = []string{"/dev/pipes/" + f.Name}
			} else {
				args = []string{data}
			}
		} else {
			var sb strings.Builder
			sb.WriteString(args[0])
			for _, f := range c.Files {
				sb.WriteString("\n" + f.Data + f.Name)
			}
			args = []string{sb.String()}
		}
	}
	if c.PrependShell && script == nil {
		args = s.withShell(args)
	}
	network := b.o.Network
	switch instructions.GetNetwork(c) {
	case instructions.NetworkHost:
		network = container.NetworkHost
	case instructions.NetworkNone:
		network = container.NetworkNone
	}
	var env []string
	for _, e := range s.env {
		env = append(env, e.k+"="+e.v)
	}
	createdBy := "RUN " + runString(args, s.args)
	t0 := time.Now()
	n := b.begin(s, display)
	s.key = cacheKey(s.key, createdBy, strings.Join(env, "\x00"), "network="+network, scriptKey(script))
	if ok, err := b.hit(s); err != nil || ok {
		if ok {
			b.endCached(n)
		}
		return err
	}
	if s.img == nil {
		return fmt.Errorf("RUN on an empty file system (FROM scratch with nothing added): nothing to run %q with", args[0])
	}
	work, err := os.MkdirTemp("", "strata-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	id := container.NewID()
	if err := writeOwner(work, id, b.o.Runtime, b.st); err != nil {
		return err
	}
	root := filepath.Join(work, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	sess, err := session.Start(ctx, b.st, string(s.img.ID), root, session.Options{
		Suid: true, AllowOther: true, FsName: "strata-build:" + id[:12],
	})
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			sess.Close()
		}
	}()
	o := container.Options{Network: network, Hostname: "buildkitsandbox"}
	if script != nil {
		sp := filepath.Join(work, "pipes")
		if err := os.Mkdir(sp, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sp, script.Name), []byte(script.Data), 0o755); err != nil {
			return err
		}
		o.Mounts = append(o.Mounts, specs.Mount{Destination: "/dev/pipes", Type: "bind", Source: sp, Options: []string{"rbind", "ro"}})
	}
	cfg := ocispec.ImageConfig{Env: env, Cmd: args, WorkingDir: s.cfg.Config.WorkingDir, User: s.cfg.Config.User}
	out := &stepOutput{w: b.out, n: n, t0: t0}
	code, err := b.o.Runtime.RunOnce(ctx, id, filepath.Join(work, "run"), root, cfg, o, container.Stdio{Stdout: out, Stderr: out})
	out.flush()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil || code != 0 {
		if err == nil {
			err = fmt.Errorf("process %q did not complete successfully: exit code: %d", strings.Join(args, " "), code)
		}
		fmt.Fprintf(b.out, "#%d ERROR: %v\n\n", n, err)
		se := b.at(c, err).(*StepError)
		se.Step = stepName(b, s, display)
		se.Code, se.Output = code, out.tail()
		closed = true
		return errors.Join(se, sess.Close())
	}
	s.history(createdBy+" # buildkit", true)
	skip := container.Mountpoints(nil)
	rec := sess.Record()
	changes, err := session.DiffSkipping(b.st, &rec, skip)
	if err != nil {
		return err
	}
	var img *layerstore.Image
	if len(changes) == 0 {
		s.cfg.History[len(s.cfg.History)-1].EmptyLayer = true
		img, err = b.store(ctx, s, nil)
	} else {
		var got layerstore.Image
		got, err = sess.Commit(ctx, session.CommitOptions{CreatedBy: createdBy, Skip: skip, Edit: s.edit, ConfigExtra: s.extraMap(), CacheKey: s.key})
		img = &got
	}
	closed = true
	if cerr := sess.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := b.stored(s, img); err != nil {
		return err
	}
	b.end(n, t0)
	return nil
}

func stepName(b *builder, s *stageState, text string) string {
	label := ""
	if len(b.df.stages) > 1 {
		label = s.name
		if label == "" {
			label = fmt.Sprintf("stage-%d", s.index)
		}
		label += " "
	}
	return fmt.Sprintf("[%s%d/%d] %s", label, s.step, s.total, text)
}

func scriptKey(f *instructions.ShellInlineFile) string {
	if f == nil {
		return ""
	}
	return f.Name + "\x00" + f.Data
}

// runString is BuildKit's record of a RUN: "|N K=V… " with the ARGs in
// scope, then the command.
func runString(args []string, buildArgs []kv) string {
	var parts []string
	if len(buildArgs) > 0 {
		parts = append(parts, fmt.Sprintf("|%d", len(buildArgs)))
		for _, a := range buildArgs {
			parts = append(parts, a.k+"="+a.v)
		}
	}
	return strings.Join(append(parts, args...), " ")
}

// stepOutput streams a RUN's output as BuildKit's plain progress does:
// each line prefixed with the vertex and the seconds since it started. It
// keeps the last lines for the error.
type stepOutput struct {
	mu   sync.Mutex
	w    io.Writer
	n    int
	t0   time.Time
	buf  []byte
	last []string
}

func (o *stepOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	for {
		i := bytes.IndexByte(o.buf, '\n')
		if i < 0 {
			break
		}
		o.line(string(o.buf[:i]))
		o.buf = o.buf[i+1:]
	}
	return len(p), nil
}

func (o *stepOutput) line(l string) {
	fmt.Fprintf(o.w, "#%d %.3f %s\n", o.n, time.Since(o.t0).Seconds(), l)
	o.last = append(o.last, l)
	if len(o.last) > 20 {
		o.last = o.last[1:]
	}
}

func (o *stepOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.buf) > 0 {
		o.line(string(o.buf))
		o.buf = nil
	}
}

func (o *stepOutput) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.last, "\n")
}
