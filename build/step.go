package build

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"runtime"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-dev/strata/layerstore"
)

func goarch() string { return runtime.GOARCH }

// edit lays the stage's config over a new image's.
func (s *stageState) edit(c *ocispec.Image) error {
	c.Config = s.cfg.Config
	c.Author = s.cfg.Author
	c.History = append([]ocispec.History(nil), s.cfg.History...)
	return nil
}

// extraMap is imageExtra as layerstore.NewImageOptions.ConfigExtra wants
// it: nil deletes a key.
func (s *stageState) extraMap() map[string]any {
	m := map[string]any{"Healthcheck": nil, "OnBuild": nil, "Shell": nil}
	if len(s.extra.Healthcheck) > 0 {
		m["Healthcheck"] = json.RawMessage(s.extra.Healthcheck)
	}
	if len(s.extra.OnBuild) > 0 {
		m["OnBuild"] = s.extra.OnBuild
	}
	if len(s.extra.Shell) > 0 {
		m["Shell"] = s.extra.Shell
	}
	return m
}

// store makes the stage's next image: its last one, plus the layer open
// writes (none: a config-only image), with the stage's config, cached
// under the stage's key in the same transaction.
func (b *builder) store(ctx context.Context, s *stageState, open func() (io.ReadCloser, error)) (*layerstore.Image, error) {
	opt := layerstore.NewImageOptions{Base: s.img, Edit: s.edit, ConfigExtra: s.extraMap(), CacheKey: s.key}
	if open != nil {
		opt.Layers = []layerstore.NewLayer{{Open: open}}
	}
	img, err := b.st.NewImage(ctx, opt)
	if err != nil {
		return nil, err
	}
	return &img, nil
}

// stored makes img (stored and cached under the stage's key) the stage's
// image.
func (b *builder) stored(s *stageState, img *layerstore.Image) error {
	s.img, s.pending = img, false
	return s.setConfig(img)
}

// hit takes the stage's next image from the cache, if there.
func (b *builder) hit(s *stageState) (bool, error) {
	img, err := b.cached(s.key)
	if err != nil || img == nil {
		return false, err
	}
	s.img, s.pending = img, false
	return true, s.setConfig(img)
}

// commitConfig stores what the instructions after the last layer did to
// the config, as a stage's last image.
func (b *builder) commitConfig(ctx context.Context, s *stageState) (*layerstore.Image, error) {
	if !s.pending && s.img != nil {
		return s.img, nil
	}
	s.key = cacheKey(s.key, "END")
	if ok, err := b.hit(s); err != nil || ok {
		return s.img, err
	}
	img, err := b.store(ctx, s, nil)
	if err != nil {
		return nil, err
	}
	return img, b.stored(s, img)
}

// tree is the merged tree of the stage's image so far, nil for nothing;
// the caller closes it (Close of nil is nothing).
func (b *builder) tree(s *stageState) (*layerstore.Tree, error) {
	if s.img == nil || len(s.img.Layers) == 0 {
		return nil, nil
	}
	_, t, err := b.st.ImageTree(string(s.img.ID))
	return t, err
}

// layerStep runs a step that may add a layer: from the cache when its key
// is there, else by writing plan's layer (nil or empty: no layer).
func (b *builder) layerStep(ctx context.Context, s *stageState, createdBy string, n int, t0 time.Time, plan func() (*layerPlan, error), keyParts ...string) error {
	s.key = cacheKey(s.key, append([]string{createdBy}, keyParts...)...)
	if ok, err := b.hit(s); err != nil || ok {
		if ok {
			b.endCached(n)
		}
		return err
	}
	p, err := plan()
	if err != nil {
		return err
	}
	var open func() (io.ReadCloser, error)
	if p != nil && !p.empty() {
		open = func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(p.write(pw)) }()
			return pr, nil
		}
		s.history(createdBy+" # buildkit", true)
	} else {
		s.history(createdBy+" # buildkit", false)
	}
	img, err := b.store(ctx, s, open)
	if err != nil {
		return err
	}
	if err := b.stored(s, img); err != nil {
		return err
	}
	b.end(n, t0)
	return nil
}

// workdir sets the working directory and makes it when the image has it
// not (a layer, as BuildKit's mkdir), owned by USER.
func (b *builder) workdir(ctx context.Context, s *stageState, c *instructions.WorkdirCommand) error {
	wd := c.Path
	if !path.IsAbs(wd) {
		base := s.cfg.Config.WorkingDir
		if base == "" {
			base = "/"
		}
		wd = path.Join(base, wd)
	}
	wd = path.Clean(wd)
	s.cfg.Config.WorkingDir = wd
	t0 := time.Now()
	n := b.begin(s, "WORKDIR "+wd)
	if wd == "/" {
		s.history("WORKDIR /", false)
		s.key = cacheKey(s.key, "WORKDIR /")
		b.end(n, t0)
		return nil
	}
	createdBy := "WORKDIR " + wd
	s.key = cacheKey(s.key, createdBy, "user="+s.cfg.Config.User)
	if ok, err := b.hit(s); err != nil || ok {
		if ok {
			b.endCached(n)
		}
		return err
	}
	tree, err := b.tree(s)
	if err != nil {
		return err
	}
	defer tree.Close() // the plan's nodes are copies (entryNode)
	owner := ownerMode{mode: 0o755}
	if u := s.cfg.Config.User; u != "" {
		uid, gid, err := b.chown(s, tree, u)
		if err != nil {
			return err
		}
		owner.uid, owner.gid = uid, gid
	}
	p := newPlan(tree, owner)
	real := p.resolveDest(wd + "/")
	if !p.isDir(real) {
		p.mkdir(real)
		// mkdir -p gives every new directory the owner; the last one too.
	}
	var open func() (io.ReadCloser, error)
	if !p.empty() {
		// Only directories the image has not are part of the layer's news;
		// the ones it has come along as they are.
		open = func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(p.write(pw)) }()
			return pr, nil
		}
	}
	s.history(createdBy, open != nil)
	img, err := b.store(ctx, s, open)
	if err != nil {
		return err
	}
	if err := b.stored(s, img); err != nil {
		return fmt.Errorf("WORKDIR %s: %w", wd, err)
	}
	b.end(n, t0)
	return nil
}
