package build

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/strata-dev/strata/layerstore"
)

// layerFile is one entry of a COPY or ADD layer: a node of a source (or
// bytes of its own) at a path of the image.
type layerFile struct {
	dest string // cleaned, relative path in the image
	n    *node
	open func() (io.ReadCloser, error) // regular files
	hard string                        // hard link to an earlier dest of this layer
}

// layerPlan is what a COPY or ADD writes: its files, and the directories
// above them (the image's as they are, or new ones made by mkdir -p).
type layerPlan struct {
	files   []layerFile
	seen    map[string]bool
	tree    *layerstore.Tree // the image so far; nil for scratch
	newDirs ownerMode        // what directories made to reach a destination get
	now     time.Time
}

type ownerMode struct {
	uid, gid int
	mode     uint32
}

func newPlan(tree *layerstore.Tree, dirs ownerMode) *layerPlan {
	return &layerPlan{seen: map[string]bool{}, tree: tree, newDirs: dirs, now: time.Now()}
}

func (p *layerPlan) lookupImage(rel string) (*layerstore.Entry, bool) {
	if p.tree == nil {
		return nil, false
	}
	return p.tree.Lookup(rel)
}

// add puts f in the layer after the directories above it.
func (p *layerPlan) add(f layerFile) {
	p.parents(f.dest)
	if p.seen[f.dest] {
		// A later source of the same name replaces an earlier one.
		for i := range p.files {
			if p.files[i].dest == f.dest {
				p.files = append(p.files[:i], p.files[i+1:]...)
				break
			}
		}
	}
	p.seen[f.dest] = true
	p.files = append(p.files, f)
}

// mkdir adds directory rel (and those above it) unless it is there.
func (p *layerPlan) mkdir(rel string) {
	if rel == "" || p.seen[rel] {
		return
	}
	p.parents(rel)
	p.seen[rel] = true
	if e, ok := p.lookupImage(rel); ok && e.Type == layerstore.TypeDir {
		p.files = append(p.files, layerFile{dest: rel, n: entryNode(e)})
		return
	}
	p.files = append(p.files, layerFile{dest: rel, n: &node{typ: layerstore.TypeDir, mode: p.newDirs.mode, uid: p.newDirs.uid, gid: p.newDirs.gid, mtime: p.now}})
}

func (p *layerPlan) parents(rel string) {
	if d := path.Dir(rel); d != "." && d != "" {
		p.mkdir(d)
	}
}

// empty reports whether the layer would change nothing.
func (p *layerPlan) empty() bool { return len(p.files) == 0 }

// write writes the layer as a tar stream, directories first in path order
// as they were added.
func (p *layerPlan) write(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, f := range p.files {
		if err := writeEntry(tw, f); err != nil {
			return fmt.Errorf("%s: %w", f.dest, err)
		}
	}
	return tw.Close()
}

func writeEntry(tw *tar.Writer, f layerFile) error {
	n := f.n
	h := &tar.Header{
		Name:     f.dest,
		Mode:     int64(n.mode),
		Uid:      n.uid,
		Gid:      n.gid,
		ModTime:  n.mtime,
		Format:   tar.FormatPAX,
		Devmajor: int64(n.devmajor),
		Devminor: int64(n.devminor),
	}
	if len(n.xattrs) > 0 {
		h.PAXRecords = map[string]string{}
		keys := make([]string, 0, len(n.xattrs))
		for k := range n.xattrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			h.PAXRecords["SCHILY.xattr."+k] = n.xattrs[k]
		}
	}
	switch {
	case f.hard != "":
		h.Typeflag, h.Linkname = tar.TypeLink, f.hard
	default:
		switch n.typ {
		case layerstore.TypeReg:
			h.Typeflag, h.Size = tar.TypeReg, n.size
		case layerstore.TypeDir:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case layerstore.TypeSymlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, n.link
		case layerstore.TypeChar:
			h.Typeflag = tar.TypeChar
		case layerstore.TypeBlock:
			h.Typeflag = tar.TypeBlock
		case layerstore.TypeFifo:
			h.Typeflag = tar.TypeFifo
		default:
			return fmt.Errorf("unsupported type %v", n.typ)
		}
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg || n.size == 0 {
		return nil
	}
	rc, err := f.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	got, err := io.Copy(tw, io.LimitReader(rc, n.size))
	if err != nil {
		return err
	}
	if got != n.size {
		return fmt.Errorf("changed while being copied: %d bytes instead of %d", got, n.size)
	}
	return nil
}

func digestOf(s string) digest.Digest { return digest.Digest(s) }

// resolveDest follows symlinks in the destination inside the image, the
// last component's too, as BuildKit's copy does (a link's target outside
// the root is taken back to the root), and returns the cleaned relative
// path.
func (p *layerPlan) resolveDest(dest string) string {
	parts := splitPath(dest)
	var done []string
	for hops := 0; len(parts) > 0 && hops < 40; {
		name := parts[0]
		parts = parts[1:]
		cur := path.Join(append(done, name)...)
		e, ok := p.lookupImage(cur)
		if !ok || e.Type != layerstore.TypeSymlink {
			done = append(done, name)
			continue
		}
		hops++
		base := []string{"/"}
		if !path.IsAbs(e.Link) {
			base = append(base, done...)
		}
		parts = append(splitPath(path.Join(append(base, e.Link)...)), parts...)
		done = nil
	}
	return strings.Join(done, "/")
}

// isDir reports whether rel is a directory of the image or of this layer.
func (p *layerPlan) isDir(rel string) bool {
	if rel == "" {
		return true
	}
	for _, f := range p.files {
		if f.dest == rel {
			return f.n.typ == layerstore.TypeDir
		}
	}
	e, ok := p.lookupImage(rel)
	return ok && e.Type == layerstore.TypeDir
}
