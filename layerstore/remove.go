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
// is refused by ID even forced; forced, any user's image is only untagged
// and stays, dangling, as docker keeps a container's.
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
		rb := bucket(tx, bucketRefs)
		tags := allTags(tx)[id]
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
		if byTag == "" && len(tags) > 1 && !force {
			return &ConflictError{Ref: shortID(id), Reason: "image is referenced in multiple repositories"}
		}
		if u := users[id]; len(u) > 0 && byTag == "" && byDigest == "" {
			if u[0].Running {
				return &ConflictError{Ref: shortID(id), Reason: fmt.Sprintf("image is being used by running %s %s", u[0].Kind, u[0].short()), Final: true}
			}
			if !force {
				return &ConflictError{Ref: shortID(id), Reason: fmt.Sprintf("image is being used by stopped %s %s", u[0].Kind, u[0].short())}
			}
		}
		mounts, err := mountsTx(tx)
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
			if err := rb.Delete([]byte(t)); err != nil {
				return err
			}
		}
		if kept {
			// As docker keeps the image of a container: forced, it is
			// untagged only, and stays (dangling) for the container.
			return nil
		}
		if err := bucket(tx, bucketImages).Delete([]byte(id)); err != nil {
			return err
		}
		rep.Deleted = append(rep.Deleted, id)
		rep.DeletedImages++
		var layers []digest.Digest
		layers, doomed, err = sweep(tx)
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
		if err := bucket(tx, bucketRefs).Delete([]byte(byTag)); err != nil {
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
		ib, rb := bucket(tx, bucketImages), bucket(tx, bucketRefs)
		for _, id := range victims {
			if ib.Get([]byte(id)) == nil {
				continue
			}
			t := tags[id]
			sort.Strings(t)
			for _, tag := range t {
				rep.Untagged = append(rep.Untagged, tag)
				if err := rb.Delete([]byte(tag)); err != nil {
					return err
				}
			}
			if err := ib.Delete([]byte(id)); err != nil {
				return err
			}
			rep.Deleted = append(rep.Deleted, id)
			rep.DeletedImages++
		}
		layers, d, err := sweep(tx)
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

// sweep deletes every layer and tree that no image and no lease (live or
// stale: a stale lease is cleared by umount or GC, not here) holds, drops
// their object references, and returns the layers deleted and the objects
// whose last reference went.
func sweep(tx *bolt.Tx) ([]digest.Digest, []objectFile, error) {
	keepLayer, keepTree, err := held(tx)
	if err != nil {
		return nil, nil, err
	}
	tb := bucket(tx, bucketTrees)
	var trees [][]byte
	files := map[digest.Digest]bool{} // tree files of the trees swept
	tb.ForEach(func(k, _ []byte) error {
		rec, err := getTreeRecord(tx, digest.Digest(k))
		if errors.Is(err, ErrNotFound) || !keepTree[digest.Digest(k)] {
			// unheld, or in the layout of an earlier version (built again when needed)
			trees = append(trees, append([]byte(nil), k...))
			if err == nil {
				files[rec.File] = true
			}
		}
		return nil
	})
	for _, k := range trees {
		if err := tb.DeleteBucket(k); err != nil {
			return nil, nil, err
		}
	}
	var doomed []objectFile
	tb.ForEach(func(k, _ []byte) error {
		if rec, err := getTreeRecord(tx, digest.Digest(k)); err == nil {
			delete(files, rec.File) // another chain with the same merged tree
		}
		return nil
	})
	for d := range files {
		doomed = append(doomed, objectFile{d: d, tree: true})
	}
	lb := bucket(tx, bucketLayers)
	var layers []digest.Digest
	lb.ForEach(func(k, _ []byte) error {
		if !keepLayer[digest.Digest(k)] {
			layers = append(layers, digest.Digest(k))
		}
		return nil
	})
	for _, d := range layers {
		objs, err := layerObjects(tx, d)
		if err != nil {
			return nil, nil, err
		}
		for o, size := range objs {
			gone, err := refObject(tx, o, size, -1)
			if err != nil {
				return nil, nil, err
			}
			if gone {
				doomed = append(doomed, objectFile{d: o, size: size})
			}
		}
		if err := lb.DeleteBucket([]byte(d)); err != nil {
			return nil, nil, err
		}
	}
	return layers, doomed, dropStaleCache(tx)
}

// held is what images and leases (live or stale) hold: their layers and the
// trees of their chains. Every other layer or tree is garbage.
func held(tx *bolt.Tx) (layers, trees map[digest.Digest]bool, err error) {
	layers, trees = map[digest.Digest]bool{}, map[digest.Digest]bool{}
	err = bucket(tx, bucketImages).ForEach(func(k, v []byte) error {
		// Only what holds: decoding the whole record (its config, in
		// base64) for every image made each removal cost as much as the
		// store's images times their layers.
		var rec struct {
			Layers  []digest.Digest `json:"layers"`
			ChainID digest.Digest   `json:"chainID"`
		}
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("image %s: %w: %w", k, err, ErrCorrupt)
		}
		for _, d := range rec.Layers {
			layers[d] = true
		}
		trees[rec.ChainID] = true
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	mounts, err := mountsTx(tx)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range mounts {
		for _, d := range m.Layers {
			layers[d] = true
		}
		trees[m.ChainID] = true
	}
	return layers, trees, nil
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
