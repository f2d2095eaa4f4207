package layerstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// RemoveReport says what a removal did, in docker's terms.
type RemoveReport struct {
	Untagged      []string
	Deleted       []digest.Digest // image IDs, then layer diffIDs
	DeletedImages int
	Reclaimed     int64 // bytes of object files removed
}

func (r *RemoveReport) add(o *RemoveReport) {
	r.Untagged = append(r.Untagged, o.Untagged...)
	r.Deleted = append(r.Deleted, o.Deleted...)
	r.DeletedImages += o.DeletedImages
	r.Reclaimed += o.Reclaimed
}

// ConflictError is docker's refusal to delete without force (or, Final,
// at all).
type ConflictError struct {
	Ref, Reason string
	Final       bool
	// Repository: Ref is a repository reference (a tag or repo digest)
	// whose removal would leave a container's image dangling, in docker's
	// other shape of the message.
	Repository bool
}

func (e *ConflictError) Error() string {
	if e.Repository {
		return fmt.Sprintf("conflict: unable to remove repository reference %q (must force) - %s", e.Ref, e.Reason)
	}
	how := "must be forced"
	if e.Final {
		how = "cannot be forced"
	}
	return fmt.Sprintf("conflict: unable to delete %s (%s) - %s", e.Ref, how, e.Reason)
}
func (e *ConflictError) Unwrap() error { return ErrInUse }

// RemoveImage removes ref as docker rmi does: a tag or a repo digest
// ("name@sha256:…") of an image that other tags or repo digests name is
// only removed (untagging a repository's last tag drops its repo digests
// too); otherwise the image goes, and with it every layer and object
// nothing else holds. Without force, an ID naming an image of several
// repositories, or an image a live mount uses, is refused; so is the last
// reference to an image a user (Options.Users) has. A running user's image
// is refused by ID even forced. Forced, any user's image is only untagged
// and stays, dangling: a departure from docker, which deletes a stopped
// container's image, made because a container whose top layer has no lease
// (a run that failed before its root was mounted, a crash) makes it again
// from its image's record, and could not start again without it.
func (s *Store) RemoveImage(ref string, force bool) (*RemoveReport, error) {
	// Exclusive: an import in flight may be counting on objects and layers
	// this removal would delete.
	lk, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()
	users, err := s.imageUsers()
	if err != nil {
		return nil, err
	}
	rep := &RemoveReport{}
	var doomed []objectFile
	err = s.update(func(tx *bolt.Tx) error {
		id, err := resolve(tx, ref)
		if err != nil {
			return err
		}
		tags := tagsOf(tx, id)
		sort.Strings(tags)
		byTag := ""
		for _, t := range tags {
			if n, err := NormalizeRef(ref); t == ref || err == nil && n == t {
				byTag = t
			}
		}
		if t, holder := heldTag(tx, tags); t != "" && (byTag == "" || byTag == t || len(tags) == 1) {
			name := ref
			if byTag == "" {
				name = shortID(id)
			}
			return &ConflictError{Ref: name, Reason: fmt.Sprintf("image is held by %s (as %s)", holder, t), Final: true}
		}
		byDigest := ""
		if byTag == "" {
			if n, err := ParseRepoDigest(ref); err == nil {
				if _, ok := resolveRepoDigest(tx, n); ok {
					byDigest = n
				}
			}
		}
		if byTag != "" || byDigest != "" {
			left, err := dropReference(tx, id, tags, byTag, byDigest, rep)
			if err != nil || left > 0 {
				return err
			}
			if u := users[id]; len(u) > 0 && !force {
				// Its last reference (the transaction, untag and all, is
				// rolled back): as docker, rather leave a container's
				// image dangling only when told to.
				return &ConflictError{Ref: ref, Repository: true, Reason: fmt.Sprintf("%s %s is using its referenced image %s", u[0].Kind, u[0].short(), shortID(id))}
			}
			tags = nil // none was left: the image goes
		}
		// By ID, in docker's order (checkImageDeleteConflict): a running
		// user, then other repositories, then a stopped user.
		u := users[id]
		byID := byTag == "" && byDigest == ""
		if byID && len(u) > 0 && u[0].Running {
			return &ConflictError{Ref: shortID(id), Reason: fmt.Sprintf("image is being used by running %s %s", u[0].Kind, u[0].short()), Final: true}
		}
		if byTag == "" && len(tags) > 1 && !force {
			return &ConflictError{Ref: shortID(id), Reason: "image is referenced in multiple repositories"}
		}
		if byID && len(u) > 0 && !force {
			return &ConflictError{Ref: shortID(id), Reason: fmt.Sprintf("image is being used by stopped %s %s", u[0].Kind, u[0].short())}
		}
		core, err := getImageCore(tx, id)
		if err != nil {
			return err
		}
		mounts, err := mountsOf(tx, core)
		if err != nil {
			return err
		}
		// A container's image (by its record, or a kept top layer that
		// will be served again) stays, untagged.
		kept := len(users[id]) > 0
		for _, m := range mounts {
			if m.Image == id && m.Alive() && !force {
				name := ref
				if byTag == "" && byDigest == "" {
					name = shortID(id)
				}
				return &ConflictError{Ref: name, Reason: fmt.Sprintf("image is in use by the mount at %s", m.Dir)}
			}
			kept = kept || m.Image == id && m.Keep
		}
		for _, t := range tags {
			rep.Untagged = append(rep.Untagged, t)
			if err := deleteRef(tx, t); err != nil {
				return err
			}
		}
		if kept {
			// Forced, a user's image is untagged only and stays
			// (dangling) for the container: docker would delete a
			// stopped container's, but a container without a lease
			// needs its image's record to make its top layer again.
			return nil
		}
		if err := deleteImage(tx, core); err != nil {
			return err
		}
		rep.Deleted = append(rep.Deleted, id)
		rep.DeletedImages++
		var layers []digest.Digest
		layers, doomed, err = sweepReleased(tx, core.Layers, core.ChainID)
		rep.Deleted = append(rep.Deleted, layers...)
		return err
	})
	if err != nil {
		return nil, err
	}
	rep.Reclaimed = removeObjects(s, doomed)
	return rep, nil
}

// dropReference removes the tag byTag or the repo digest byDigest of image
// id, as docker's untag does: with a tag goes every repo digest of its
// repository when no other tag of it is left. It returns how many tags and
// repo digests still name the image; at 0, the caller deletes it.
func dropReference(tx *bolt.Tx, id digest.Digest, tags []string, byTag, byDigest string, rep *RemoveReport) (int, error) {
	ib := bucket(tx, bucketImages)
	var rec imageRecord
	if err := json.Unmarshal(ib.Get([]byte(id)), &rec); err != nil {
		return 0, fmt.Errorf("image %s: %w: %w", id, err, ErrCorrupt)
	}
	left := len(tags)
	drop := map[string]bool{byDigest: byDigest != ""}
	if byTag != "" {
		rep.Untagged = append(rep.Untagged, byTag)
		if err := deleteRef(tx, byTag); err != nil {
			return 0, err
		}
		left--
		repo := tagRepo(byTag)
		if !slices.ContainsFunc(tags, func(t string) bool { return t != byTag && tagRepo(t) == repo }) {
			for _, rd := range rec.RepoDigests {
				if r, _, _ := strings.Cut(rd, "@"); r == repo {
					drop[rd] = true
				}
			}
		}
	}
	kept := rec.RepoDigests[:0:0]
	for _, rd := range rec.RepoDigests {
		if drop[rd] {
			rep.Untagged = append(rep.Untagged, rd)
		} else {
			kept = append(kept, rd)
		}
	}
	left += len(kept)
	if left == 0 || len(kept) == len(rec.RepoDigests) {
		return left, nil // the image goes, or its record is as it was
	}
	rec.RepoDigests = kept
	v, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	return left, ib.Put([]byte(id), v)
}

// tagRepo is the repository of a normalized tag: "a/b:1" -> "a/b".
func tagRepo(tag string) string {
	if i := strings.LastIndexByte(tag, ':'); i > strings.LastIndexByte(tag, '/') {
		return tag[:i]
	}
	return tag
}

func shortID(id digest.Digest) string {
	h := id.Encoded()
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// Prune removes dangling images (no tag), or with all every image that no
// live mount and no user (Options.Users: a container, in any state) uses.
func (s *Store) Prune(all bool) (*RemoveReport, error) {
	return s.pruneImages(func(tx *bolt.Tx, tags map[digest.Digest][]string, used map[digest.Digest]bool) ([]digest.Digest, error) {
		var victims []digest.Digest
		bucket(tx, bucketImages).ForEach(func(k, _ []byte) error {
			if id := digest.Digest(k); !used[id] && (all || len(tags[id]) == 0) {
				victims = append(victims, id)
			}
			return nil
		})
		return victims, nil
	})
}

// pruneImages is the one shape of Prune and PruneCache: under the store's
// exclusive lock, in one transaction, pick returns the images to remove
// (given every image's tags and the images a live mount or a containerd
// hold uses), which lose their tags and records; then the layers and objects
// nothing holds any more go, the object files after the commit.
func (s *Store) pruneImages(pick func(tx *bolt.Tx, tags map[digest.Digest][]string, used map[digest.Digest]bool) ([]digest.Digest, error)) (*RemoveReport, error) {
	lk, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()
	users, err := s.imageUsers()
	if err != nil {
		return nil, err
	}
	rep := &RemoveReport{}
	var doomed []objectFile
	err = s.update(func(tx *bolt.Tx) error {
		tags := allTags(tx)
		mounts, err := mountsTx(tx)
		if err != nil {
			return err
		}
		used := map[digest.Digest]bool{}
		for id := range users {
			used[id] = true // a container in any state
		}
		for _, m := range mounts {
			if m.Alive() {
				used[m.Image] = true
			}
		}
		for id, t := range tags {
			if h, _ := heldTag(tx, t); h != "" {
				used[id] = true
			}
		}
		victims, err := pick(tx, tags, used)
		if err != nil {
			return err
		}
		sort.Slice(victims, func(i, j int) bool { return victims[i] < victims[j] })
		ib := bucket(tx, bucketImages)
		var released, chains []digest.Digest
		for _, id := range victims {
			if ib.Get([]byte(id)) == nil {
				continue
			}
			core, err := getImageCore(tx, id)
			if err != nil {
				return err
			}
			t := tags[id]
			sort.Strings(t)
			for _, tag := range t {
				rep.Untagged = append(rep.Untagged, tag)
				if err := deleteRef(tx, tag); err != nil {
					return err
				}
			}
			if err := deleteImage(tx, core); err != nil {
				return err
			}
			rep.Deleted = append(rep.Deleted, id)
			rep.DeletedImages++
			released = append(released, core.Layers...)
			chains = append(chains, core.ChainID)
		}
		layers, d, err := sweepReleased(tx, released, chains...)
		doomed = d
		rep.Deleted = append(rep.Deleted, layers...)
		return err
	})
	if err != nil {
		return nil, err
	}
	rep.Reclaimed = removeObjects(s, doomed)
	return rep, nil
}

// objectFile is a file to remove once the transaction that stopped naming
// it has committed: an object, or a tree file.
type objectFile struct {
	d    digest.Digest
	size int64
	tree bool
}

// deleteImage deletes an image's record, its holds and its build cache
// entries (its tags are the caller's, which reports them).
func deleteImage(tx *bolt.Tx, core imageCore) error {
	if err := hold(tx, imageHolder(core.ID), core.Layers, core.ChainID, true); err != nil {
		return err
	}
	if err := dropCacheOf(tx, core.ID); err != nil {
		return err
	}
	return bucket(tx, bucketImages).Delete([]byte(core.ID))
}

// mountsOf is the leases of the image core: those holding its chain's tree
// (an image without layers has none to look up by: every lease is read).
func mountsOf(tx *bolt.Tx, core imageCore) ([]MountRecord, error) {
	if core.ChainID == "" {
		return mountsTx(tx)
	}
	var out []MountRecord
	mb := bucket(tx, bucketMounts)
	for _, h := range holdersOf(tx, holdTree, core.ChainID) {
		id, ok := strings.CutPrefix(h, "m")
		if !ok {
			continue
		}
		var m MountRecord
		if err := json.Unmarshal(mb.Get([]byte(id)), &m); err != nil {
			return nil, fmt.Errorf("mount %s: %w: %w", id, err, ErrCorrupt)
		}
		if m.Image == core.ID {
			out = append(out, m)
		}
	}
	return out, nil
}

// sweepReleased deletes, of the layers and the trees of chains that
// removed images or leases held, those nothing holds any more (the holders
// index says), drops their object references, and returns the layers
// deleted (sorted) and the object and tree files to remove after the
// commit. It reads only those layers and trees: a removal costs what it
// frees, not what the store holds.
func sweepReleased(tx *bolt.Tx, layers []digest.Digest, chains ...digest.Digest) ([]digest.Digest, []objectFile, error) {
	var doomed []objectFile
	tb := bucket(tx, bucketTrees)
	for _, c := range uniq(chains) {
		if c == "" || tb.Bucket([]byte(c)) == nil || isHeld(tx, holdTree, c) {
			continue
		}
		f, err := dropTree(tx, c)
		if err != nil {
			return nil, nil, err
		}
		doomed = append(doomed, f...)
	}
	lb := bucket(tx, bucketLayers)
	var deleted []digest.Digest
	for _, d := range uniq(layers) {
		if lb.Bucket([]byte(d)) == nil || isHeld(tx, holdLayer, d) {
			continue
		}
		objs, err := dropLayer(tx, d)
		if err != nil {
			return nil, nil, err
		}
		deleted = append(deleted, d)
		doomed = append(doomed, objs...)
	}
	return deleted, doomed, nil
}

// sweep deletes every layer and tree that no image and no lease (live or
// stale: a stale lease is cleared by umount or GC, not here) holds, and the
// trees of an earlier version's layout: GC's sweep, of what an interrupted
// command or a lease removed while imports ran left.
func sweep(tx *bolt.Tx) ([]digest.Digest, []objectFile, error) {
	var trees, layers []digest.Digest
	bucket(tx, bucketTrees).ForEach(func(k, _ []byte) error {
		c := digest.Digest(k)
		if !isHeld(tx, holdTree, c) || !treeStored(tx, c) {
			trees = append(trees, c)
		}
		return nil
	})
	bucket(tx, bucketLayers).ForEach(func(k, _ []byte) error {
		if d := digest.Digest(k); !isHeld(tx, holdLayer, d) {
			layers = append(layers, d)
		}
		return nil
	})
	var doomed []objectFile
	for _, c := range trees {
		f, err := dropTree(tx, c)
		if err != nil {
			return nil, nil, err
		}
		doomed = append(doomed, f...)
	}
	for _, d := range layers {
		objs, err := dropLayer(tx, d)
		if err != nil {
			return nil, nil, err
		}
		doomed = append(doomed, objs...)
	}
	return layers, doomed, dropStaleCache(tx)
}

// dropTree deletes the tree of chain c, and returns its tree file when no
// other tree names it (two chains may merge to the same tree).
func dropTree(tx *bolt.Tx, c digest.Digest) ([]objectFile, error) {
	rec, err := getTreeFile(tx, c)
	if err := bucket(tx, bucketTrees).DeleteBucket([]byte(c)); err != nil {
		return nil, err
	}
	if err != nil {
		return nil, nil // the layout of an earlier version: no file
	}
	if err := bucket(tx, bucketHolders).Delete(holderKey(holdFile, rec.File, treeHolder(c))); err != nil {
		return nil, err
	}
	if isHeld(tx, holdFile, rec.File) {
		return nil, nil
	}
	return []objectFile{{d: rec.File, tree: true}}, nil
}

// dropLayer deletes layer d and its object references, and returns the
// objects whose last reference went.
func dropLayer(tx *bolt.Tx, d digest.Digest) ([]objectFile, error) {
	objs, err := layerObjects(tx, d)
	if err != nil {
		return nil, err
	}
	var doomed []objectFile
	for o, size := range objs {
		gone, err := refObject(tx, o, size, -1)
		if err != nil {
			return nil, err
		}
		if gone {
			doomed = append(doomed, objectFile{d: o, size: size})
		}
	}
	return doomed, bucket(tx, bucketLayers).DeleteBucket([]byte(d))
}

// uniq is ds sorted, each once.
func uniq(ds []digest.Digest) []digest.Digest {
	out := slices.Clone(ds)
	slices.Sort(out)
	return slices.Compact(out)
}

// removeObjects deletes object files after the transaction that dropped them
// committed; a crash before this leaves garbage for GC. It returns the bytes
// of object files freed on disk (tree files go too, uncounted).
func removeObjects(s *Store, objs []objectFile) int64 {
	var freed int64
	for _, o := range objs {
		p := s.ObjectPath(o.d)
		if o.tree {
			p = s.TreePath(o.d) // derived data: not counted as reclaimed content
		} else {
			freed += diskUsage(p)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove object", "digest", o.d, "err", err)
		}
	}
	return freed
}
