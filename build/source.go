package build

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/strata-dev/strata/layerstore"
)

// node is one file of a COPY or ADD source: the build context or an image.
type node struct {
	path     string // cleaned, relative, "/"-separated; "" is the root
	typ      layerstore.Type
	mode     uint32 // permission bits with setuid, setgid and sticky
	uid, gid int
	size     int64
	mtime    time.Time
	link     string
	devmajor uint32
	devminor uint32
	xattrs   map[string]string
	digest   string // regular files of an image: the content's digest
	inode    uint64 // regular files with more than one name: what they share
}

// source is where COPY and ADD read from.
type source interface {
	// lookup returns the entry at p (cleaned, relative), not following a
	// final symlink; false if there is none.
	lookup(p string) (*node, bool)
	// children lists directory p's entries, sorted by name.
	children(p string) []*node
	// open opens regular file n.
	open(n *node) (io.ReadCloser, error)
	// all lists every entry, sorted by path (the root excluded).
	all() []*node
	// what names the source in errors.
	what() string
}

// contextDir is the build context: a directory less what .dockerignore
// excludes, read once when the build starts.
type contextDir struct {
	root  string
	nodes map[string]*node
	kids  map[string][]*node
	list  []*node
}

// loadContext walks dir, leaving out what its .dockerignore excludes, with
// docker's pattern rules.
func loadContext(dir string) (*contextDir, error) {
	c := &contextDir{root: dir, nodes: map[string]*node{}, kids: map[string][]*node{}}
	var pm *patternmatcher.PatternMatcher
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		patterns, rerr := ignorefile.ReadAll(f)
		f.Close()
		if rerr != nil {
			return nil, fmt.Errorf(".dockerignore: %w", rerr)
		}
		if pm, err = patternmatcher.New(patterns); err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	parents := map[string]patternmatcher.MatchInfo{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		if rel != "" && pm != nil {
			parent := path.Dir(rel)
			if parent == "." {
				parent = ""
			}
			excluded, info, err := pm.MatchesUsingParentResults(rel, parents[parent])
			if err != nil {
				return err
			}
			if d.IsDir() {
				parents[rel] = info
			}
			if excluded {
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n, err := nodeOf(rel, p, fi)
		if err != nil {
			return err
		}
		c.nodes[rel] = n
		if rel != "" {
			c.list = append(c.list, n)
			dirOf := path.Dir(rel)
			if dirOf == "." {
				dirOf = ""
			}
			c.kids[dirOf] = append(c.kids[dirOf], n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", dir, err)
	}
	// A file kept by a "!" exception under an excluded directory: the
	// directories above it come along.
	for _, n := range append([]*node(nil), c.list...) {
		for d := path.Dir(n.path); d != "." && c.nodes[d] == nil; d = path.Dir(d) {
			fi, err := os.Lstat(filepath.Join(dir, d))
			if err != nil {
				return nil, err
			}
			dn, err := nodeOf(d, filepath.Join(dir, d), fi)
			if err != nil {
				return nil, err
			}
			c.nodes[d] = dn
			c.list = append(c.list, dn)
			pd := path.Dir(d)
			if pd == "." {
				pd = ""
			}
			c.kids[pd] = append(c.kids[pd], dn)
		}
	}
	sort.Slice(c.list, func(i, j int) bool { return c.list[i].path < c.list[j].path })
	for _, k := range c.kids {
		sort.Slice(k, func(i, j int) bool { return k[i].path < k[j].path })
	}
	return c, nil
}

// nodeOf describes a file of the context. Owners are root's: docker sends
// the context's files as root's.
func nodeOf(rel, p string, fi os.FileInfo) (*node, error) {
	n := &node{path: rel, mode: uint32(fi.Mode().Perm()), mtime: fi.ModTime(), size: fi.Size()}
	if fi.Mode()&os.ModeSetuid != 0 {
		n.mode |= 0o4000
	}
	if fi.Mode()&os.ModeSetgid != 0 {
		n.mode |= 0o2000
	}
	if fi.Mode()&os.ModeSticky != 0 {
		n.mode |= 0o1000
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		n.typ = layerstore.TypeReg
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			n.inode = st.Ino // one device: the context is one directory tree
		}
	case m.IsDir():
		n.typ, n.size = layerstore.TypeDir, 0
	case m&os.ModeSymlink != 0:
		n.typ = layerstore.TypeSymlink
		l, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		n.link, n.size = l, 0
	case m&os.ModeNamedPipe != 0:
		n.typ, n.size = layerstore.TypeFifo, 0
	case m&os.ModeDevice != 0:
		n.typ, n.size = layerstore.TypeBlock, 0
		if m&os.ModeCharDevice != 0 {
			n.typ = layerstore.TypeChar
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n.devmajor, n.devminor = uint32(st.Rdev>>8&0xfff), uint32(st.Rdev&0xff|(st.Rdev>>12)&0xfff00)
		}
	default:
		return nil, fmt.Errorf("%s: unsupported file type %s", rel, m.Type())
	}
	return n, nil
}

func (c *contextDir) lookup(p string) (*node, bool) { n, ok := c.nodes[p]; return n, ok }
func (c *contextDir) children(p string) []*node     { return c.kids[p] }
func (c *contextDir) all() []*node                  { return c.list }
func (c *contextDir) what() string                  { return "build context" }

func (c *contextDir) open(n *node) (io.ReadCloser, error) {
	f, err := os.OpenFile(filepath.Join(c.root, filepath.FromSlash(n.path)), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// imageSource is an image's merged tree (COPY --from).
type imageSource struct {
	name string
	tree *layerstore.Tree
	st   *layerstore.Store
}

// entryNode makes a node of a tree's entry. Its strings are copies: an
// entry's point into the tree's mapping, which goes at the tree's Close,
// and a node lives on in a layer plan.
func entryNode(e *layerstore.Entry) *node {
	var xattrs map[string]string
	if len(e.Xattrs) > 0 {
		xattrs = make(map[string]string, len(e.Xattrs))
		for k, v := range e.Xattrs {
			xattrs[strings.Clone(k)] = strings.Clone(v)
		}
	}
	n := &node{
		path: strings.Clone(e.Path), typ: e.Type, mode: e.Mode, uid: int(e.UID), gid: int(e.GID), size: e.Size,
		mtime: time.Unix(0, e.Mtime), link: strings.Clone(e.Link), devmajor: e.Devmajor, devminor: e.Devminor,
		xattrs: xattrs, digest: strings.Clone(string(e.Digest)),
	}
	if e.Type == layerstore.TypeReg && e.Nlink > 1 {
		n.inode = e.Ino
	}
	return n
}

func (s *imageSource) lookup(p string) (*node, bool) {
	e, ok := s.tree.Lookup(p)
	if !ok {
		return nil, false
	}
	return entryNode(e), true
}

func (s *imageSource) children(p string) []*node {
	var out []*node
	for _, e := range s.tree.Children(p) {
		out = append(out, entryNode(e))
	}
	return out
}

func (s *imageSource) all() []*node {
	var out []*node
	s.tree.Walk(func(e *layerstore.Entry) error {
		if e.Path != "" {
			out = append(out, entryNode(e))
		}
		return nil
	})
	return out
}

func (s *imageSource) open(n *node) (io.ReadCloser, error) {
	if n.size == 0 && n.digest == "" {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return os.Open(s.st.ObjectPath(digestOf(n.digest)))
}

func (s *imageSource) what() string { return s.name }

// resolve follows symlinks in p (and p itself when final) inside src's
// root, as docker follows them inside the context or an image; a link that
// leaves the root is an error for the context (docker never sends what is
// outside it) and is taken back to the root for an image, as
// FollowSymlinkInScope does.
func resolve(src source, p string, final, inContext bool) (string, error) {
	parts := splitPath(p)
	var done []string
	for hops := 0; len(parts) > 0; {
		name := parts[0]
		parts = parts[1:]
		cur := path.Join(append(done, name)...)
		n, ok := src.lookup(cur)
		if !ok || n.typ != layerstore.TypeSymlink || (len(parts) == 0 && !final) {
			done = append(done, name)
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target := n.link
		var base []string
		if !path.IsAbs(target) {
			base = done
		}
		joined := path.Join(append(append([]string{"/"}, base...), target)...)
		if inContext && escapes(strings.Join(base, "/"), target) {
			return "", fmt.Errorf("%s: symlink %s -> %s points outside the build context", p, cur, n.link)
		}
		parts = append(splitPath(joined), parts...)
		done = nil
	}
	return strings.Join(done, "/"), nil
}

// escapes reports whether target, read as a link in directory dir of a
// root, leaves the root.
func escapes(dir, target string) bool {
	if path.IsAbs(target) {
		return true // absolute: the host's path, not one in the context
	}
	depth := len(splitPath(dir))
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}
