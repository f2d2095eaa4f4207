package session

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/layerstore"
)

// Diff lists the changes mount m made to its image, as docker diff does
// (see fs.Diff). It reads the top layer only, so it works from any process,
// while the mount is live or after its server is gone. A read-only mount
// has none.
func Diff(st *layerstore.Store, m *layerstore.MountRecord) ([]fs.Change, error) {
	return DiffSkipping(st, m, nil)
}

// DiffSkipping is Diff leaving out the mountpoints skip names (fs.Skip).
func DiffSkipping(st *layerstore.Store, m *layerstore.MountRecord, skip fs.Skip) ([]fs.Change, error) {
	if m.ReadOnly {
		return nil, nil
	}
	_, tree, err := st.MountTree(m.Image.String())
	if err != nil {
		return nil, err
	}
	defer tree.Close()
	if err := syncLive(st, m); err != nil {
		return nil, err
	}
	return fs.DiffSkipping(UpperDir(st, m.ID), tree, skip)
}

// syncLive writes back what the kernel still caches of a live writable
// mount's writes (the FUSE writeback cache), so that its top layer holds
// them all before it is read.
func syncLive(st *layerstore.Store, m *layerstore.MountRecord) error {
	if m.ReadOnly || !m.Running() {
		return nil
	}
	mi, err := ReadMountinfo()
	if err != nil {
		return err
	}
	if fstype, ok := Mounted(mi, m.Dir); !ok || !strings.HasPrefix(fstype, "fuse") {
		return nil // not mounted here (gone, or in another mount namespace)
	}
	return fs.SyncMount(m.Dir, UpperDir(st, m.ID))
}

// CommitOptions describe the image Commit makes.
type CommitOptions struct {
	// Names tag the new image (normalized references); none leaves it
	// dangling.
	Names []string
	// Message and Author go into the history entry; Author also into the
	// config. Default: empty, the base image's author stays.
	Message, Author string
	// CreatedBy is the history entry's created_by. Default "strata commit
	// DIR".
	CreatedBy string
	// Config, if set, replaces the image config's Config (a container's
	// run settings become the new image's, as docker commit does).
	Config *ocispec.ImageConfig
	// Skip leaves out mountpoints the upper dir only added, empty (fs.Skip).
	Skip fs.Skip
	// Edit, if set, edits the new image's config last (a build step sets
	// its history and config); ConfigExtra is layerstore's.
	Edit        func(cfg *ocispec.Image) error
	ConfigExtra map[string]any
	// CacheKey is layerstore's: the build cache names the new image.
	CacheKey string
	// Progress, if set, is told how the new layer is read (its bytes).
	Progress func(layerstore.Progress)
}

// Commit turns the changes of mount m into a new layer on its image and
// stores the result as a new image. The layer is read from the top layer as
// it is, so files being written meanwhile may be caught halfway; the mount
// goes on as it was.
func Commit(ctx context.Context, st *layerstore.Store, m *layerstore.MountRecord, o CommitOptions) (layerstore.Image, error) {
	if m.ReadOnly {
		return layerstore.Image{}, fmt.Errorf("%s: a read-only mount has no changes to commit: %w", m.Dir, layerstore.ErrInvalid)
	}
	base, tree, err := st.ImageTree(m.Image.String())
	if err != nil {
		return layerstore.Image{}, err
	}
	// The tree goes once no writer of the layer reads it any more.
	var writers sync.WaitGroup
	var readers []io.Closer
	var rmu sync.Mutex
	defer func() {
		rmu.Lock()
		for _, r := range readers {
			r.Close()
		}
		rmu.Unlock()
		writers.Wait()
		tree.Close()
	}()
	if err := syncLive(st, m); err != nil {
		return layerstore.Image{}, err
	}
	upper := UpperDir(st, m.ID)
	createdBy := o.CreatedBy
	if createdBy == "" {
		createdBy = "strata commit " + m.Dir
	}
	now := time.Now().UTC()
	layer := layerstore.NewLayer{
		Open: func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			rmu.Lock()
			readers = append(readers, pr)
			rmu.Unlock()
			writers.Add(1)
			go func() {
				defer writers.Done()
				pw.CloseWithError(fs.WriteLayerSkipping(pw, upper, tree, st.ObjectPath, o.Skip))
			}()
			return pr, nil
		},
		History: ocispec.History{
			Created:   &now,
			CreatedBy: createdBy,
			Author:    o.Author,
			Comment:   o.Message,
		},
	}
	return st.NewImage(ctx, layerstore.NewImageOptions{
		Base:   &base,
		Layers: []layerstore.NewLayer{layer},
		Edit: func(cfg *ocispec.Image) error {
			if o.Author != "" {
				cfg.Author = o.Author
			}
			if o.Config != nil {
				cfg.Config = *o.Config
			}
			if o.Edit != nil {
				return o.Edit(cfg)
			}
			return nil
		},
		ConfigExtra: o.ConfigExtra,
		CacheKey:    o.CacheKey,
		Names:       o.Names,
		Progress:    o.Progress,
	})
}

// Diff lists the changes of this session's mount.
func (s *Session) Diff() ([]fs.Change, error) { return Diff(s.st, &s.rec) }

// Commit makes an image of this session's changes.
func (s *Session) Commit(ctx context.Context, o CommitOptions) (layerstore.Image, error) {
	return Commit(ctx, s.st, &s.rec, o)
}
