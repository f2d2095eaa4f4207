package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/sys/user"
	"github.com/ulikunitz/xz"

	"github.com/strata-dev/strata/layerstore"
)

type copyArgs struct {
	cmd                instructions.Command
	name               string // COPY or ADD
	sd                 instructions.SourcesAndDest
	from               string
	chown, chmod       string
	add, parents, link bool
	exclude            []string
	checksum           string
}

// copy runs COPY or ADD: one layer of the selected files at the
// destination, keyed by their checksum (contents and metadata, not mtimes).
func (b *builder) copy(ctx context.Context, s *stageState, a copyArgs) error {
	if a.parents || len(a.exclude) > 0 || a.checksum != "" {
		return fmt.Errorf("%s --parents, --exclude and --checksum are not supported", a.name)
	}
	msg := a.name
	if a.chown != "" {
		msg += " --chown=" + a.chown
	}
	if a.chmod != "" {
		msg += " --chmod=" + a.chmod
	}
	for _, p := range a.sd.SourcePaths {
		msg += " " + p
	}
	for _, c := range a.sd.SourceContents {
		msg += " <<" + c.Path
	}
	msg += " " + a.sd.DestPath
	display := msg
	if a.from != "" {
		display = strings.Replace(msg, a.name, a.name+" --from="+a.from, 1)
	}
	t0 := time.Now()
	n := b.begin(s, display)

	var src source
	var srcID string
	switch {
	case a.from != "":
		if j := b.stageByName(a.from); j >= 0 {
			img, err := b.stage(ctx, j)
			if err != nil {
				return err
			}
			_, t, err := b.st.ImageTree(string(img.ID))
			if err != nil {
				return err
			}
			defer t.Close() // the plan's nodes are copies (entryNode)
			src, srcID = &imageSource{name: "stage " + a.from, tree: t, st: b.st}, string(img.ID)
		} else {
			img, t, err := b.st.ImageTree(a.from)
			if err != nil {
				return fmt.Errorf("COPY --from=%s: no such stage or image: %w", a.from, err)
			}
			defer t.Close()
			src, srcID = &imageSource{name: "image " + a.from, tree: t, st: b.st}, string(img.ID)
		}
	case b.ctxDir != nil:
		src = b.ctxDir
	}
	tree, err := b.tree(s)
	if err != nil {
		return err
	}
	defer tree.Close()
	var mode *uint32
	if a.chmod != "" {
		m, err := strconv.ParseUint(a.chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777", a.chmod)
		}
		mm := uint32(m)
		mode = &mm
	}
	uid, gid := -1, -1
	if a.chown != "" {
		if uid, gid, err = b.chown(s, tree, a.chown); err != nil {
			return err
		}
	}
	dirOwner := ownerMode{mode: 0o755}
	if uid >= 0 {
		dirOwner.uid, dirOwner.gid = uid, gid
	}
	p := newPlan(tree, dirOwner)
	dest := s.absPath(a.sd.DestPath)
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\x00%s\x00%s\x00%d:%d\x00", a.name, srcID, dest, uid, gid)

	type item struct {
		n    *node
		src  source
		open func() (io.ReadCloser, error)
		name string // the base name a file keeps under a directory destination
	}
	var items []item
	for _, sp := range a.sd.SourcePaths {
		if a.add && isURL(sp) {
			it, err := b.fetch(ctx, sp)
			if err != nil {
				return err
			}
			items = append(items, item{n: it.n, open: it.open, name: it.name})
			continue
		}
		if src == nil {
			return fmt.Errorf("%s %s: no build context (the Dockerfile came alone)", a.name, sp)
		}
		rel := path.Clean(strings.TrimPrefix(sp, "/"))
		if rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("%s %s: the path is outside the %s: %w", a.name, sp, src.what(), layerstore.ErrInvalid)
		}
		if rel == "." {
			rel = ""
		}
		var matched []*node
		if strings.ContainsAny(rel, "*?[") {
			for _, cand := range src.all() {
				if ok, err := path.Match(rel, cand.path); err != nil {
					return fmt.Errorf("%s %s: %w", a.name, sp, err)
				} else if ok {
					matched = append(matched, cand)
				}
			}
			if len(matched) == 0 {
				return fmt.Errorf("%s %s: no file in the %s matches: %w", a.name, sp, src.what(), layerstore.ErrNotFound)
			}
		} else {
			real, err := resolve(src, rel, true, src == source(b.ctxDir))
			if err != nil {
				return fmt.Errorf("%s %s: %w", a.name, sp, err)
			}
			nd, ok := src.lookup(real)
			if !ok {
				return fmt.Errorf("%s %s: not found in the %s (or excluded by .dockerignore): %w", a.name, sp, src.what(), layerstore.ErrNotFound)
			}
			cp := *nd
			matched = []*node{&cp}
			cp.path = real
		}
		for _, m := range matched {
			m := m
			items = append(items, item{n: m, src: src, name: path.Base(m.path)})
		}
	}
	for _, c := range a.sd.SourceContents {
		data := c.Data
		items = append(items, item{
			n:    &node{typ: layerstore.TypeReg, mode: 0o644, size: int64(len(data)), mtime: time.Now()},
			open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil },
			name: path.Base(c.Path),
		})
	}
	if len(items) > 1 && !strings.HasSuffix(a.sd.DestPath, "/") {
		return fmt.Errorf("when using %s with more than one source file, the destination must be a directory and end with a /", a.name)
	}
	real := p.resolveDest(dest)
	destDir := strings.HasSuffix(dest, "/") || p.isDir(real)

	// own applies --chown and --chmod to what a source gives.
	own := func(n *node, fromContext bool) *node {
		c := *n
		if fromContext {
			c.uid, c.gid = 0, 0
		}
		if uid >= 0 {
			c.uid, c.gid = uid, gid
		}
		if mode != nil {
			c.mode = *mode
		}
		return &c
	}
	for _, it := range items {
		fromContext := it.src != nil && it.src == source(b.ctxDir)
		open := it.open
		if open == nil {
			nd, s := it.n, it.src
			open = func() (io.ReadCloser, error) { return s.open(nd) }
		}
		if it.n.typ == layerstore.TypeDir {
			// A directory's contents go under the destination.
			existed := p.isDir(real)
			p.mkdir(real)
			if real != "" && !existed {
				p.add(layerFile{dest: real, n: own(it.n, fromContext)})
			}
			links := map[uint64]string{} // hard links stay links, as BuildKit copies them
			if err := b.walk(it.src, it.n.path, func(c *node) error {
				rel := strings.TrimPrefix(strings.TrimPrefix(c.path, it.n.path), "/")
				f := layerFile{dest: path.Join(real, rel), n: own(c, fromContext)}
				if c.inode != 0 {
					if first, ok := links[c.inode]; ok {
						f.hard = first
					} else {
						links[c.inode] = f.dest
					}
				}
				if c.typ == layerstore.TypeReg && f.hard == "" {
					cs, cn := it.src, c
					f.open = func() (io.ReadCloser, error) { return cs.open(cn) }
				}
				p.add(f)
				return hashNode(sum, f, it.src)
			}); err != nil {
				return err
			}
			continue
		}
		target := real
		if destDir {
			target = path.Join(real, it.name)
		}
		if a.add && it.src != nil && it.n.typ == layerstore.TypeReg {
			ok, err := b.extract(p, it.src, it.n, target, real, destDir, sum)
			if err != nil {
				return fmt.Errorf("ADD %s: %w", it.n.path, err)
			}
			if ok {
				continue
			}
		}
		nd := own(it.n, fromContext)
		if it.src == nil && uid < 0 {
			nd.uid, nd.gid = 0, 0
		}
		f := layerFile{dest: target, n: nd, open: open}
		p.add(f)
		if err := hashNode(sum, f, it.src); err != nil {
			return err
		}
	}
	checksum := hex.EncodeToString(sum.Sum(nil))
	return b.layerStep(ctx, s, msg, n, t0, func() (*layerPlan, error) { return p, nil }, checksum)
}

// walk calls fn for everything under dir of src, parents first.
func (b *builder) walk(src source, dir string, fn func(*node) error) error {
	for _, c := range src.children(dir) {
		if err := fn(c); err != nil {
			return err
		}
		if c.typ == layerstore.TypeDir {
			if err := b.walk(src, c.path, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// hashNode adds f to a COPY's checksum: its place, metadata and content.
func hashNode(h io.Writer, f layerFile, src source) error {
	n := f.n
	fmt.Fprintf(h, "%s\x00%d\x00%o\x00%d:%d\x00%d\x00%s\x00%d,%d\x00", f.dest, n.typ, n.mode, n.uid, n.gid, n.size, n.link, n.devmajor, n.devminor)
	keys := make([]string, 0, len(n.xattrs))
	for k := range n.xattrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, n.xattrs[k])
	}
	if f.hard != "" {
		fmt.Fprintf(h, "hard=%s\x00", f.hard)
		return nil
	}
	if n.typ != layerstore.TypeReg {
		return nil
	}
	if n.digest != "" {
		fmt.Fprintf(h, "%s\x00", n.digest)
		return nil
	}
	rc, err := f.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	c := sha256.New()
	if _, err := io.Copy(c, rc); err != nil {
		return err
	}
	h.Write(c.Sum(nil))
	return nil
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

type fetched struct {
	n    *node
	open func() (io.ReadCloser, error)
	name string
}

// fetch downloads an ADD URL into memory-backed temp storage: mode 0600,
// mtime from Last-Modified, as docker does.
func (b *builder) fetch(ctx context.Context, raw string) (*fetched, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		return nil, fmt.Errorf("ADD %s: cannot determine a file name from the URL", raw)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ADD %s: %s", raw, resp.Status)
	}
	f, err := b.tempFile()
	if err != nil {
		return nil, err
	}
	size, err := io.Copy(f, resp.Body)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	mtime := time.Unix(0, 0)
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		mtime = lm
	}
	return &fetched{
		n:    &node{typ: layerstore.TypeReg, mode: 0o600, size: size, mtime: mtime},
		open: func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(f, 0, size)), nil },
		name: name,
	}, nil
}

// extract unpacks a local archive (tar, gzip, bzip2, xz or zstd
// compressed) ADD names into the destination directory, as docker does;
// false if the file is no archive (it is copied as it is).
func (b *builder) extract(p *layerPlan, src source, n *node, target, real string, destDir bool, sum io.Writer) (bool, error) {
	rc, err := src.open(n)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	r, err := decompress(bufio.NewReader(rc))
	if err != nil {
		return false, nil
	}
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil {
		return false, nil // not a tar: a plain file
	}
	// Members' contents wait in one unnamed file until the layer is written.
	spool, err := b.tempFile()
	if err != nil {
		return true, err
	}
	var off int64
	base := real
	p.mkdir(base)
	for ; err == nil; h, err = tr.Next() {
		name := path.Clean("/" + h.Name)[1:]
		if name == "" {
			continue
		}
		if strings.HasPrefix(path.Base(name), layerstore.WhiteoutPrefix) {
			return true, fmt.Errorf("archive entry %s is a whiteout", h.Name)
		}
		nd := &node{mode: uint32(h.Mode) & 0o7777, uid: h.Uid, gid: h.Gid, size: 0, mtime: h.ModTime, link: h.Linkname, devmajor: uint32(h.Devmajor), devminor: uint32(h.Devminor)}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				if nd.xattrs == nil {
					nd.xattrs = map[string]string{}
				}
				nd.xattrs[strings.TrimPrefix(k, "SCHILY.xattr.")] = v
			}
		}
		f := layerFile{dest: path.Join(base, name), n: nd}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			n, err := io.Copy(io.NewOffsetWriter(spool, off), tr)
			if err != nil {
				return true, err
			}
			at := off
			off += n
			nd.typ, nd.size = layerstore.TypeReg, n
			f.open = func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(spool, at, n)), nil }
		case tar.TypeDir:
			nd.typ = layerstore.TypeDir
		case tar.TypeSymlink:
			nd.typ = layerstore.TypeSymlink
		case tar.TypeLink:
			nd.typ = layerstore.TypeReg
			f.hard = path.Join(base, path.Clean("/" + h.Linkname)[1:])
		case tar.TypeChar:
			nd.typ = layerstore.TypeChar
		case tar.TypeBlock:
			nd.typ = layerstore.TypeBlock
		case tar.TypeFifo:
			nd.typ = layerstore.TypeFifo
		default:
			continue
		}
		p.add(f)
		fmt.Fprintf(sum, "%s\x00%d\x00%o\x00%d:%d\x00%s\x00%s\x00", f.dest, nd.typ, nd.mode, nd.uid, nd.gid, nd.link, f.hard)
		if f.open != nil {
			if err := hashNode(sum, f, nil); err != nil {
				return true, err
			}
		}
	}
	if err != io.EOF {
		return true, err
	}
	return true, nil
}

// decompress reads r as gzip, bzip2, xz or zstd by its magic, or as it is.
func decompress(r *bufio.Reader) (io.Reader, error) {
	magic, _ := r.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(r)
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(r), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return xz.NewReader(r)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return r, nil
}

// chown resolves --chown's USER[:GROUP] (names or ids) against the
// image's own /etc/passwd and /etc/group; a missing group is the user's
// uid, as docker's rule.
func (b *builder) chown(s *stageState, tree *layerstore.Tree, spec string) (int, int, error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	read := func(p string) io.Reader {
		if tree == nil {
			return nil
		}
		e, ok := tree.Lookup(p)
		if ok && e.Type == layerstore.TypeSymlink {
			pl := newPlan(tree, ownerMode{})
			e, ok = tree.Lookup(pl.resolveDest("/" + p + "/"))
		}
		if !ok || e.Type != layerstore.TypeReg {
			return nil
		}
		data, err := os.ReadFile(b.st.ObjectPath(e.Digest))
		if err != nil {
			return nil
		}
		return bytes.NewReader(data)
	}
	uid, err := strconv.Atoi(u)
	if err != nil {
		r := read("etc/passwd")
		if r == nil {
			return 0, 0, fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find uid for user %s: no such user", u)
		}
		users, err := user.ParsePasswdFilter(r, func(x user.User) bool { return x.Name == u })
		if err != nil || len(users) == 0 {
			return 0, 0, fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find uid for user %s: no such user: %s", u, u)
		}
		uid = users[0].Uid
	}
	gid := uid
	if hasGroup {
		if gid, err = strconv.Atoi(g); err != nil {
			r := read("etc/group")
			if r == nil {
				return 0, 0, fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find gid for group %s: no such group", g)
			}
			groups, err := user.ParseGroupFilter(r, func(x user.Group) bool { return x.Name == g })
			if err != nil || len(groups) == 0 {
				return 0, 0, fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find gid for group %s: no such group: %s", g, g)
			}
			gid = groups[0].Gid
		}
	}
	return uid, gid, nil
}

// tempFile is an unnamed file that lives until the build ends.
func (b *builder) tempFile() (*os.File, error) {
	f, err := os.CreateTemp("", "strata-build-spool-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // unnamed: gone when closed
	b.temps = append(b.temps, f)
	return f, nil
}
