package snapshotter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// Options configure Open.
type Options struct {
	// Logger receives diagnostics. Default: discard.
	Logger *slog.Logger
}

// Snapshotter keeps containerd's snapshots in a strata store. Its methods
// are safe for concurrent use; they run one at a time.
type Snapshotter struct {
	st  *layerstore.Store
	db  *bolt.DB
	dir string // <store>/snapshotter
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session.Session // by snapshot name

	ending sync.WaitGroup // mounts of committed snapshots still being ended
}

// tagRepo is the repository of the tags that hold committed snapshots.
const tagRepo = "containerd-snapshot"

// holder holds those tags (layerstore.Store.Hold): prune and rmi leave
// their images alone while containerd has the snapshots.
const holder = "containerd's snapshotter"

// mountPrefix starts the mount IDs of snapshot mounts.
const mountPrefix = "snap-"

// Mount is a mount containerd performs, as its API describes one.
type Mount struct {
	Type, Source string
	Options      []string
}

// Open opens the snapshotter state of store st and brings it back to where
// it was: active snapshots resume their kept top layers, views are mounted
// again, and what a crash left half done is finished or undone.
func Open(ctx context.Context, st *layerstore.Store, o Options) (*Snapshotter, error) {
	dir := filepath.Join(st.Root(), "snapshotter")
	if err := os.MkdirAll(filepath.Join(dir, "mnt"), 0o700); err != nil {
		return nil, err
	}
	db, err := openMeta(filepath.Join(dir, "meta.db"))
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Snapshotter{st: st, db: db, dir: dir, log: log, sessions: map[string]*session.Session{}}
	if err := s.recover(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// recover mounts what the records say is active or a view, and drops
// leases and tags no record names.
func (s *Snapshotter) recover(ctx context.Context) error {
	var recs []*record
	if err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		recs, err = allRecords(tx)
		return err
	}); err != nil {
		return err
	}
	mounts, tags := map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		switch r.Kind {
		case KindCommitted:
			tags[tagOf(r.Name)] = true
		default:
			mounts[r.Mount] = true
			if err := s.remount(ctx, r); err != nil {
				return fmt.Errorf("snapshot %q: %w", r.Name, err)
			}
		}
	}
	leases, err := s.st.Mounts()
	if err != nil {
		return err
	}
	for _, m := range leases {
		if strings.HasPrefix(m.ID, mountPrefix) && !mounts[m.ID] {
			if err := session.Remove(s.st, m.ID); err != nil {
				return err
			}
			_ = os.Remove(s.mountDir(m.ID))
		}
	}
	// Holds: every committed snapshot's (a store from before holds, or a
	// crash between a hold and its tag), and none of a snapshot gone.
	holds, err := s.st.Holds()
	if err != nil {
		return err
	}
	if _, err := s.st.ResolveImage(scratchTag); err == nil {
		tags[scratchTag] = true
	}
	for t := range tags {
		if holds[t] == "" {
			if err := s.st.Hold(t, holder); err != nil {
				return err
			}
		}
	}
	for t, h := range holds {
		if h == holder && !tags[t] {
			if err := s.st.Release(t); err != nil {
				return err
			}
		}
	}
	imgs, err := s.st.Images()
	if err != nil {
		return err
	}
	for _, img := range imgs {
		for _, t := range img.RepoTags {
			if strings.HasPrefix(t, tagRepo+":") && !tags[t] && t != scratchTag {
				if _, err := s.st.RemoveImage(t, false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// remount serves an active snapshot's or a view's mount again after a
// restart (or a crash between its record and its mount).
func (s *Snapshotter) remount(ctx context.Context, r *record) error {
	dir := s.mountDir(r.Mount)
	if _, err := session.DetachFUSE(dir); err != nil {
		return err
	}
	if r.Kind == KindActive {
		sess, err := session.Resume(ctx, s.st, r.Mount, dir, s.sessionOptions(r, false))
		if err == nil {
			s.sessions[r.Name] = sess
			return nil
		}
		if !errors.Is(err, layerstore.ErrNotFound) {
			return err
		}
		// The record was written, the mount never made: make it now.
	} else if err := session.Remove(s.st, r.Mount); err != nil {
		return err
	}
	return s.mount(ctx, r)
}

func (s *Snapshotter) sessionOptions(r *record, ro bool) session.Options {
	// A container's root file system: its setuid programs and device
	// nodes work, for every uid in it, as on overlayfs.
	return session.Options{
		ID: r.Mount, ReadOnly: ro, Keep: !ro,
		Suid: true, Dev: true, AllowOther: true,
		FsName: fsName(r.Mount), Logger: s.log,
	}
}

// mount starts the session of record r.
func (s *Snapshotter) mount(ctx context.Context, r *record) error {
	dir := s.mountDir(r.Mount)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sess, err := session.Start(ctx, s.st, r.Image.String(), dir, s.sessionOptions(r, r.Kind == KindView))
	if err != nil {
		return err
	}
	s.sessions[r.Name] = sess
	return nil
}

// fsName is the source of a snapshot's mount in the mount table; binds of
// it (a container's root) show the same.
func fsName(mountID string) string { return "strata:" + mountID }

// boundElsewhere reports whether the mount of session sess is also mounted
// somewhere else (a running container's root): then it cannot end, since
// the kernel keeps the file system while any of its mounts lives.
func boundElsewhere(sess *session.Session) (bool, error) {
	mi, err := session.ReadMountinfo()
	if err != nil {
		return false, err
	}
	for _, m := range mi {
		if m.Source == fsName(sess.ID()) && m.Dir != sess.Dir() {
			return true, nil
		}
	}
	return false, nil
}

func (s *Snapshotter) mountDir(id string) string { return filepath.Join(s.dir, "mnt", id) }

// tagOf is the tag that holds committed snapshot name.
func tagOf(name string) string {
	h := sha256.Sum256([]byte(name))
	return tagRepo + ":" + hex.EncodeToString(h[:16])
}

// scratchTag holds the image without layers that snapshots without a parent
// start from.
const scratchTag = tagRepo + ":scratch"

// scratch returns the empty image, storing it on first use.
func (s *Snapshotter) scratch(ctx context.Context) (digest.Digest, error) {
	img, err := s.st.ResolveImage(scratchTag)
	if err == nil {
		return img.ID, nil
	}
	if !errors.Is(err, layerstore.ErrNotFound) {
		return "", err
	}
	if err := s.st.Hold(scratchTag, holder); err != nil {
		return "", err
	}
	img, err = s.st.NewImage(ctx, layerstore.NewImageOptions{Names: []string{scratchTag}})
	return img.ID, err
}

// Close ends every mount this process serves. Active snapshots keep their
// top layers for the next Open; a mount a running container uses is left
// as a server killed would leave it (the container sees its root file
// system gone), and the next Open detaches it and serves the top layer
// again.
func (s *Snapshotter) Close() error {
	s.ending.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, sess := range s.sessions {
		busy, err := boundElsewhere(sess)
		if err != nil {
			errs = append(errs, err)
		}
		if busy {
			s.log.Warn("snapshot mount in use by a container: left for the next start", "snapshot", name, "dir", sess.Dir())
			continue
		}
		if err := sess.Close(); err != nil {
			errs = append(errs, fmt.Errorf("snapshot %q: %w", name, err))
		}
		delete(s.sessions, name)
	}
	return errors.Join(append(errs, s.db.Close())...)
}

// Prepare makes an active snapshot key on parent ("" for none) and returns
// its mounts.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, labels map[string]string) ([]Mount, error) {
	return s.create(ctx, KindActive, key, parent, labels)
}

// View makes a read-only snapshot key of parent and returns its mounts.
func (s *Snapshotter) View(ctx context.Context, key, parent string, labels map[string]string) ([]Mount, error) {
	return s.create(ctx, KindView, key, parent, labels)
}

func (s *Snapshotter) create(ctx context.Context, kind Kind, key, parent string, labels map[string]string) ([]Mount, error) {
	if key == "" {
		return nil, fmt.Errorf("snapshot key is empty: %w", layerstore.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == KindActive {
		ok, err := s.stored(ctx, key, parent, labels)
		if err != nil {
			return nil, err
		}
		if ok {
			return nil, fmt.Errorf("snapshot %q: strata stores its target %s: %w", key, labels[labelTarget], layerstore.ErrExists)
		}
	}
	now := time.Now().UTC()
	r := &record{Info: Info{Name: key, Parent: parent, Kind: kind, Labels: labels, Created: now, Updated: now}, Mount: mountPrefix + session.NewID()}
	if parent == "" {
		id, err := s.scratch(ctx)
		if err != nil {
			return nil, err
		}
		r.Image = id
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if snapshots(tx).Get([]byte(key)) != nil {
			return fmt.Errorf("snapshot %q: %w", key, layerstore.ErrExists)
		}
		if parent != "" {
			p, err := getRecord(tx, parent)
			if err != nil {
				return fmt.Errorf("parent: %w", err)
			}
			if p.Kind != KindCommitted {
				return fmt.Errorf("parent %q is not committed: %w", parent, layerstore.ErrInvalid)
			}
			r.Image = p.Image
		}
		return putRecord(tx, r)
	})
	if err != nil {
		return nil, err
	}
	if err := s.mount(ctx, r); err != nil {
		return nil, errors.Join(err, s.db.Update(func(tx *bolt.Tx) error { return snapshots(tx).Delete([]byte(key)) }))
	}
	return s.mountsOf(r), nil
}

// mountsOf is the bind mount of r's strata mount.
func (s *Snapshotter) mountsOf(r *record) []Mount {
	opt := "rw"
	if r.Kind == KindView {
		opt = "ro"
	}
	return []Mount{{Type: "bind", Source: s.mountDir(r.Mount), Options: []string{"rbind", opt}}}
}

// Mounts returns the mounts of active snapshot or view key.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]Mount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.get(key)
	if err != nil {
		return nil, err
	}
	if r.Kind == KindCommitted {
		return nil, fmt.Errorf("snapshot %q is committed: it has no mounts: %w", key, layerstore.ErrInvalid)
	}
	return s.mountsOf(r), nil
}

func (s *Snapshotter) get(name string) (*record, error) {
	var r *record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getRecord(tx, name)
		return err
	})
	return r, err
}

// Commit turns active snapshot key into committed snapshot name: its top
// layer becomes a strata layer on the parent's, and the mount goes.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, labels map[string]string) error {
	if name == "" {
		return fmt.Errorf("snapshot name is empty: %w", layerstore.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.get(key)
	if err != nil {
		return err
	}
	if r.Kind != KindActive {
		return fmt.Errorf("snapshot %q is %s, not active: %w", key, r.Kind, ErrPrecondition)
	}
	if _, err := s.get(name); err == nil {
		return fmt.Errorf("snapshot %q: %w", name, layerstore.ErrExists)
	}
	sess := s.sessions[key]
	if sess == nil {
		return fmt.Errorf("snapshot %q: its mount is not served: %w", key, ErrPrecondition)
	}
	if err := s.notInUse(key, sess); err != nil {
		return err
	}
	rec := sess.Record()
	// Held before it exists: no prune between the tag and the hold.
	if err := s.st.Hold(tagOf(name), holder); err != nil {
		return err
	}
	img, err := session.Commit(ctx, s.st, &rec, session.CommitOptions{Names: []string{tagOf(name)}, CreatedBy: "containerd commit " + name})
	if err != nil {
		return errors.Join(err, s.st.Release(tagOf(name)))
	}
	now := time.Now().UTC()
	c := &record{Info: Info{Name: name, Parent: r.Parent, Kind: KindCommitted, Labels: labels, Created: now, Updated: now}, Image: img.ID}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if snapshots(tx).Get([]byte(name)) != nil {
			return fmt.Errorf("snapshot %q: %w", name, layerstore.ErrExists)
		}
		if err := snapshots(tx).Delete([]byte(key)); err != nil {
			return err
		}
		return putRecord(tx, c)
	}); err != nil {
		return err
	}
	// Committed: the mount and its top layer are leftovers now, ended after
	// the answer (containerd's unpacker waits for each commit). A crash
	// before they are gone leaves a lease no record names, which Open
	// removes.
	sess = s.sessions[key]
	delete(s.sessions, key)
	s.ending.Add(1)
	go func() {
		defer s.ending.Done()
		if err := s.endMount(sess, r); err != nil {
			s.log.Warn("committed snapshot: removing its mount", "snapshot", name, "mount", r.Mount, "err", err)
		}
	}()
	return nil
}

// notInUse refuses to end the mount of snapshot key while a container
// uses it.
func (s *Snapshotter) notInUse(key string, sess *session.Session) error {
	busy, err := boundElsewhere(sess)
	if err != nil {
		return err
	}
	if busy {
		return fmt.Errorf("snapshot %q is mounted elsewhere (a running container's root): %w", key, layerstore.ErrInUse)
	}
	return nil
}

// unmount ends the session of r and deletes its top layer and mountpoint.
func (s *Snapshotter) unmount(name string, r *record) error {
	sess := s.sessions[name]
	delete(s.sessions, name)
	return s.endMount(sess, r)
}

// endMount ends session sess (nil: none is served) of record r and
// deletes its top layer, lease and mountpoint.
func (s *Snapshotter) endMount(sess *session.Session, r *record) error {
	var errs []error
	if sess != nil {
		if err := sess.Close(); err != nil {
			// In use: detach it; the server cleans up when the last
			// user is gone.
			errs = append(errs, err)
			if _, derr := session.DetachFUSE(sess.Dir()); derr == nil {
				errs = nil
				<-sess.Done()
				errs = append(errs, sess.Close())
			}
		}
	}
	errs = append(errs, session.Remove(s.st, r.Mount))
	if err := os.Remove(s.mountDir(r.Mount)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Remove deletes snapshot key. A committed snapshot with children is
// refused.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[key]; sess != nil {
		if err := s.notInUse(key, sess); err != nil {
			return err
		}
	}
	var r *record
	if err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if r, err = getRecord(tx, key); err != nil {
			return err
		}
		kids, err := hasChildren(tx, key)
		if err != nil {
			return err
		}
		if kids {
			return fmt.Errorf("cannot remove snapshot %q: it has children: %w", key, ErrPrecondition)
		}
		return snapshots(tx).Delete([]byte(key))
	}); err != nil {
		return err
	}
	if r.Kind == KindCommitted {
		if err := s.st.Release(tagOf(key)); err != nil {
			return err
		}
		_, err := s.st.RemoveImage(tagOf(key), false)
		if errors.Is(err, layerstore.ErrNotFound) {
			err = nil
		}
		return err
	}
	return s.unmount(key, r)
}

// Stat returns the info of snapshot key.
func (s *Snapshotter) Stat(ctx context.Context, key string) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.get(key)
	if err != nil {
		return Info{}, err
	}
	return r.Info, nil
}

// Update changes the labels of snapshot info.Name: every label when fields
// is empty, else the ones named "labels" (all) or "labels.KEY".
func (s *Snapshotter) Update(ctx context.Context, info Info, fields ...string) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out Info
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, info.Name)
		if err != nil {
			return err
		}
		if len(fields) == 0 {
			r.Labels = info.Labels
		}
		for _, f := range fields {
			switch {
			case f == "labels":
				r.Labels = info.Labels
			case strings.HasPrefix(f, "labels."):
				k := strings.TrimPrefix(f, "labels.")
				if r.Labels == nil {
					r.Labels = map[string]string{}
				}
				if v, ok := info.Labels[k]; ok {
					r.Labels[k] = v
				} else {
					delete(r.Labels, k)
				}
			default:
				return fmt.Errorf("snapshot %q: cannot update field %q: %w", info.Name, f, layerstore.ErrInvalid)
			}
		}
		r.Updated = time.Now().UTC()
		out = r.Info
		return putRecord(tx, r)
	})
	return out, err
}

// Walk calls fn for every snapshot that matches one of filters (all when
// there are none).
func (s *Snapshotter) Walk(ctx context.Context, fn func(Info) error, filters ...string) error {
	fs, err := parseFilters(filters)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var recs []*record
	err = s.db.View(func(tx *bolt.Tx) error {
		var err error
		recs, err = allRecords(tx)
		return err
	})
	s.mu.Unlock()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if fs.match(r.Info) {
			info := r.Info
			info.Labels = maps.Clone(r.Labels)
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// Usage is the disk space a snapshot takes of its own: an active one's top
// layer, a committed one's layer.
type Usage struct {
	Size, Inodes int64
}

// Usage returns what snapshot key uses.
func (s *Snapshotter) Usage(ctx context.Context, key string) (Usage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.get(key)
	if err != nil {
		return Usage{}, err
	}
	switch r.Kind {
	case KindActive:
		return duDir(session.UpperDir(s.st, r.Mount))
	case KindCommitted:
		img, err := s.st.ResolveImage(r.Image.String())
		if err != nil || len(img.Layers) == 0 {
			return Usage{}, err
		}
		li, err := s.st.Layer(img.Layers[len(img.Layers)-1])
		return Usage{Size: li.Size, Inodes: int64(li.Entries)}, err
	}
	return Usage{}, nil
}

// duDir adds up the blocks and inodes under dir.
func duDir(dir string) (Usage, error) {
	var u Usage
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		u.Inodes++
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			u.Size += st.Blocks * 512
		}
		return nil
	})
	return u, err
}
