package bench

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// datasetFormat changes whenever the generator writes different bytes for
// the same Spec, so that a stale dataset is never reused.
const datasetFormat = 3

// Spec sizes the generated data. Everything is derived from Seed.
type Spec struct {
	Seed int64 `json:"seed"`
	// The main image: Files regular files in about Dirs directories spread
	// over Layers layers (with overrides, whiteouts, an opaque directory and
	// symlinks), plus one file of BigSize bytes in the lowest layer.
	Files   int   `json:"files"`
	Dirs    int   `json:"dirs"`
	Layers  int   `json:"layers"`
	BigSize int64 `json:"bigSize"`
	// Depths are the layer counts of the depth images: the main tree's
	// files and directories (no big file) split over that many layers.
	Depths []int `json:"depths"`
	// WriteFiles is how many small files the write-heavy workload creates.
	WriteFiles int `json:"writeFiles"`
	// DiskImages images share the depth-1 tree as their base layer and each
	// add an app layer of AppFiles files, 90% of them the same bytes in
	// every image (with other mtimes, so no two app layers are equal).
	DiskImages int `json:"diskImages"`
	AppFiles   int `json:"appFiles"`
}

// FullSpec is the dataset of a full run: about 20,000 files in 1,000
// directories over 4 layers and a 1 GiB file.
func FullSpec() Spec {
	return Spec{Seed: 1, Files: 20000, Dirs: 1000, Layers: 4, BigSize: 1 << 30, Depths: []int{1, 10, 100, 500},
		WriteFiles: 5000, DiskImages: 10, AppFiles: 2000}
}

// QuickSpec is the dataset of --quick: small enough for a run under a minute.
func QuickSpec() Spec {
	return Spec{Seed: 1, Files: 2000, Dirs: 100, Layers: 4, BigSize: 64 << 20, Depths: []int{1, 10},
		WriteFiles: 500, DiskImages: 3, AppFiles: 200}
}

func (s Spec) hash() string {
	b, _ := json.Marshal(struct {
		Format int
		Spec
	}{datasetFormat, s})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:6])
}

// Dataset is a generated dataset on disk.
type Dataset struct {
	Spec Spec
	Dir  string
	Main *ImageData   // the main image
	Deep []*ImageData // one per Spec.Depths, same order
	Disk []*ImageData // Spec.DiskImages images sharing Deep[depth 1]'s layer as base
	// BigFile is the path of the big file relative to a root.
	BigFile string
	// Entries counts the merged tree of Main, the root excluded; SmallFiles
	// lists its regular files other than BigFile, relative to a root.
	Entries    int
	SmallFiles []string
	// DeepEntries counts the merged tree of every depth image.
	DeepEntries int
	// Real is set when Main is the real image (RealSpec).
	Real *RealSpec
}

// ImageData is one image of a dataset: its layers as directories in
// overlayfs format (whiteouts are 0/0 character devices, opaque
// directories carry trusted.overlay.opaque=y) and as tars, an OCI layout
// whose layer blobs are hard links to the tars, and the merged tree.
type ImageData struct {
	Name      string   // the name:tag it is loaded as
	LayerDirs []string // base first
	Tars      []string // same order
	Layout    string   // OCI image layout directory
	Merged    string   // the merged tree as a plain directory ("" if not made)
	// Pristine, when set, is a directory Merged is made a copy of again
	// before each writing repetition of native (the apt row's image).
	Pristine string
}

// genEntry is one entry of a generated layer.
type genEntry struct {
	path   string
	kind   byte // 'd' dir, 'f' file, 'l' symlink, 'w' whiteout, 'o' opaque marker (path is the directory)
	mode   uint32
	mtime  int64
	data   []byte // file content; nil with big set
	big    int64  // >0: a file of this many bytes from the big stream
	target string // symlink target
}

type genLayer []genEntry

var baseTime = time.Unix(1_000_000_000, 0).Unix()

// content gives deterministic file contents.
type content struct {
	pool []byte
	rnd  *rand.Rand
}

func newContent(seed int64) *content {
	c := &content{pool: make([]byte, 1<<20), rnd: rand.New(rand.NewPCG(uint64(seed), 0x5eed))}
	cc := rand.NewChaCha8(seedBytes(seed, "pool"))
	cc.Read(c.pool)
	return c
}

func seedBytes(seed int64, what string) [32]byte {
	return sha256.Sum256([]byte(fmt.Sprintf("%d/%s", seed, what)))
}

// size draws a small-file size: 64 B to 32 KiB, most a few KiB.
func (c *content) size() int {
	return 64<<c.rnd.IntN(10) + c.rnd.IntN(64)
}

// bytes returns size bytes that begin with tag (which makes them unique)
// followed by pool data.
func (c *content) bytes(tag string, size int) []byte {
	b := make([]byte, size)
	n := copy(b, tag)
	off := c.rnd.IntN(len(c.pool) - size)
	copy(b[n:], c.pool[off:])
	return b
}

// mainLayers generates the main image's layers.
func mainLayers(s Spec) ([]genLayer, string) {
	c := newContent(s.Seed)
	top := max(1, s.Dirs/50)
	dirOf := func(i int) string { return fmt.Sprintf("t%02d/d%04d", i%top, i) }
	per := (s.Files + s.Layers - 1) / s.Layers
	layerOf := func(i int) int { return i / per }
	layers := make([]genLayer, s.Layers)
	// Directories exist in every layer that puts something in them.
	need := make([]map[string]bool, s.Layers)
	for l := range need {
		need[l] = map[string]bool{}
	}
	add := func(l int, e genEntry) {
		for d := path.Dir(e.path); d != "."; d = path.Dir(d) {
			need[l][d] = true
		}
		layers[l] = append(layers[l], e)
	}
	const bigFile = "big/blob.bin"
	add(0, genEntry{path: bigFile, kind: 'f', mode: 0o644, mtime: baseTime, big: s.BigSize})
	for i := 0; i < s.Files; i++ {
		p := fmt.Sprintf("%s/f%06d.dat", dirOf(i%s.Dirs), i)
		add(layerOf(i), genEntry{path: p, kind: 'f', mode: 0o644, mtime: baseTime, data: c.bytes(p, c.size())})
		if i%100 == 0 {
			add(layerOf(i), genEntry{path: fmt.Sprintf("%s/l%06d", dirOf(i%s.Dirs), i), kind: 'l', mode: 0o777, mtime: baseTime, target: path.Base(p)})
		}
	}
	// Upper layers override 2% and delete 1% of what lower layers hold, and
	// the top layer makes one directory opaque and refills it.
	for l := 1; l < s.Layers; l++ {
		for i := 0; i < s.Files; i++ {
			if layerOf(i) >= l {
				continue
			}
			p := fmt.Sprintf("%s/f%06d.dat", dirOf(i%s.Dirs), i)
			switch {
			case i%50 == l:
				add(l, genEntry{path: p, kind: 'f', mode: 0o644, mtime: baseTime + int64(l), data: c.bytes(fmt.Sprintf("%s@%d", p, l), c.size())})
			case i%97 == l && i%50 != 0:
				add(l, genEntry{path: p, kind: 'w'})
			}
		}
	}
	if s.Layers > 1 && s.Dirs > 7 {
		l := s.Layers - 1
		d := dirOf(7)
		add(l, genEntry{path: d, kind: 'o'})
		for k := 0; k < 5; k++ {
			p := fmt.Sprintf("%s/new%d.dat", d, k)
			add(l, genEntry{path: p, kind: 'f', mode: 0o644, mtime: baseTime + int64(l), data: c.bytes(p, c.size())})
		}
	}
	for l := range layers {
		for d := range need[l] {
			layers[l] = append(layers[l], genEntry{path: d, kind: 'd', mode: 0o755, mtime: baseTime})
		}
		sortLayer(layers[l])
	}
	return layers, bigFile
}

// deepLayers splits the main tree's directories and files (no big file, no
// whiteouts) over n layers: file i goes to layer i%n.
func deepLayers(s Spec, n int) []genLayer {
	c := newContent(s.Seed + 1000)
	top := max(1, s.Dirs/50)
	dirOf := func(i int) string { return fmt.Sprintf("t%02d/d%04d", i%top, i) }
	layers := make([]genLayer, n)
	need := make([]map[string]bool, n)
	for l := range need {
		need[l] = map[string]bool{}
	}
	for i := 0; i < s.Files; i++ {
		l := i % n
		d := dirOf(i % s.Dirs)
		p := fmt.Sprintf("%s/f%06d.dat", d, i)
		layers[l] = append(layers[l], genEntry{path: p, kind: 'f', mode: 0o644, mtime: baseTime, data: c.bytes(p, c.size())})
		need[l][d] = true
		need[l][path.Dir(d)] = true
	}
	for l := range layers {
		for d := range need[l] {
			layers[l] = append(layers[l], genEntry{path: d, kind: 'd', mode: 0o755, mtime: baseTime})
		}
		sortLayer(layers[l])
	}
	return layers
}

// appLayer is image k's app layer for the disk workload.
func appLayer(s Spec, k int) genLayer {
	c := newContent(s.Seed + 2000)
	var l genLayer
	dirs := map[string]bool{"app": true}
	for i := 0; i < s.AppFiles; i++ {
		d := fmt.Sprintf("app/a%02d", i/100)
		dirs[d] = true
		p := fmt.Sprintf("%s/m%05d.so", d, i)
		tag := p
		size := c.size()
		if i%10 == k%10 {
			tag = fmt.Sprintf("%s@image%d", p, k)
		}
		l = append(l, genEntry{path: p, kind: 'f', mode: 0o755, mtime: baseTime + int64(k), data: c.bytes(tag, size)})
	}
	for d := range dirs {
		l = append(l, genEntry{path: d, kind: 'd', mode: 0o755, mtime: baseTime + int64(k)})
	}
	sortLayer(l)
	return l
}

// sortLayer orders a layer as a tar should be: parents before children, and
// in a directory the opaque marker first.
func sortLayer(l genLayer) {
	key := func(e genEntry) string {
		if e.kind == 'o' {
			return e.path + "/\x00"
		}
		return e.path
	}
	sort.Slice(l, func(i, j int) bool { return key(l[i]) < key(l[j]) })
}

// merge applies layers to an in-memory tree, as overlayfs shows them.
func merge(layers []genLayer) map[string]genEntry {
	m := map[string]genEntry{}
	drop := func(p string, self bool) {
		for q := range m {
			if strings.HasPrefix(q, p+"/") || (self && q == p) {
				delete(m, q)
			}
		}
	}
	for _, l := range layers {
		for _, e := range l {
			switch e.kind {
			case 'w':
				drop(e.path, true)
			case 'o':
				drop(e.path, false)
			}
		}
		for _, e := range l {
			if e.kind == 'd' || e.kind == 'f' || e.kind == 'l' {
				m[e.path] = e
			}
		}
	}
	return m
}

// bigStream is the deterministic content of the big file.
func bigStream(seed int64) io.Reader {
	return rand.NewChaCha8(seedBytes(seed, "big"))
}

// writeTree writes entries into dir in overlayfs layer format.
func writeTree(dir string, entries []genEntry, seed int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var dirs []genEntry
	for _, e := range entries {
		p := filepath.Join(dir, e.path)
		var err error
		switch e.kind {
		case 'd':
			if err = os.MkdirAll(p, 0o755); err == nil {
				err = os.Chmod(p, os.FileMode(e.mode))
			}
			dirs = append(dirs, e)
		case 'f':
			err = writeFile(p, e, seed)
		case 'l':
			err = os.Symlink(e.target, p)
			if err == nil {
				t := unix.NsecToTimespec(e.mtime * 1e9)
				err = unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW)
			}
		case 'w':
			err = unix.Mknod(p, unix.S_IFCHR|0o000, 0)
			if errors.Is(err, unix.EPERM) { // not root: the .wh. form, which fuse-overlayfs reads too
				err = os.WriteFile(filepath.Join(filepath.Dir(p), ".wh."+filepath.Base(p)), nil, 0o644)
			}
		case 'o':
			if err = os.MkdirAll(p, 0o755); err == nil {
				err = unix.Setxattr(p, "trusted.overlay.opaque", []byte("y"), 0)
				if errors.Is(err, unix.EPERM) {
					err = os.WriteFile(filepath.Join(p, ".wh..wh..opq"), nil, 0o644)
				}
			}
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	// Directory times last, children having changed them.
	for _, e := range dirs {
		t := time.Unix(e.mtime, 0)
		if err := os.Chtimes(filepath.Join(dir, e.path), t, t); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(p string, e genEntry, seed int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(e.mode))
	if err != nil {
		return err
	}
	if e.big > 0 {
		_, err = io.CopyBuffer(f, io.LimitReader(bigStream(seed), e.big), make([]byte, 1<<20))
	} else {
		_, err = f.Write(e.data)
	}
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return err
	}
	t := time.Unix(e.mtime, 0)
	return os.Chtimes(p, t, t)
}

// writeTar writes entries as an OCI layer tar and returns its digest.
func writeTar(p string, entries []genEntry, seed int64) (digest.Digest, int64, error) {
	f, err := os.Create(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	tw := tar.NewWriter(cw)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.path, Mode: int64(e.mode), ModTime: time.Unix(e.mtime, 0), Format: tar.FormatPAX}
		switch e.kind {
		case 'd':
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.path+"/"
		case 'f':
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))
			if e.big > 0 {
				hdr.Size = e.big
			}
		case 'l':
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.target
		case 'w':
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeReg, path.Join(path.Dir(e.path), ".wh."+path.Base(e.path)), 0o644
			hdr.ModTime = time.Unix(baseTime, 0)
		case 'o':
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeReg, e.path+"/.wh..wh..opq", 0o644
			hdr.ModTime = time.Unix(baseTime, 0)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", 0, err
		}
		if e.kind == 'f' {
			if e.big > 0 {
				_, err = io.CopyBuffer(tw, io.LimitReader(bigStream(seed), e.big), make([]byte, 1<<20))
			} else {
				_, err = tw.Write(e.data)
			}
			if err != nil {
				return "", 0, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return "", 0, err
	}
	if err := f.Close(); err != nil {
		return "", 0, err
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))), cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeLayout writes an OCI image layout naming the layer tars (hard-linked
// into blobs/), uncompressed, tagged ref "latest".
func writeLayout(dir string, tars []string, diffs []digest.Digest, sizes []int64) error {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	put := func(b []byte) (ocispec.Descriptor, error) {
		d := digest.FromBytes(b)
		return ocispec.Descriptor{Digest: d, Size: int64(len(b))}, os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644)
	}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = diffs
	created := time.Unix(baseTime, 0).UTC()
	cfg.Created = &created
	man := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for i, t := range tars {
		dst := filepath.Join(blobs, diffs[i].Encoded())
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			if err := os.Link(t, dst); err != nil {
				return err
			}
		}
		man.Layers = append(man.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffs[i], Size: sizes[i]})
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: fmt.Sprintf("bench layer %d", i)})
	}
	cb, _ := json.Marshal(cfg)
	cd, err := put(cb)
	if err != nil {
		return err
	}
	cd.MediaType = ocispec.MediaTypeImageConfig
	man.Config = cd
	mb, _ := json.Marshal(man)
	md, err := put(mb)
	if err != nil {
		return err
	}
	md.MediaType = ocispec.MediaTypeImageManifest
	md.Annotations = map[string]string{ocispec.AnnotationRefName: "latest"}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}}
	ib, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), ib, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// buildImage writes an image's layer dirs, tars and layout under dir; the
// merged tree too when merged is set.
func buildImage(dir, name string, layers []genLayer, seed int64, merged bool) (*ImageData, error) {
	img := &ImageData{Name: name, Layout: filepath.Join(dir, "oci")}
	var diffs []digest.Digest
	var sizes []int64
	for i, l := range layers {
		ld := filepath.Join(dir, "layers", fmt.Sprint(i))
		tp := filepath.Join(dir, "tars", fmt.Sprintf("%d.tar", i))
		if err := writeTree(ld, l, seed); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(tp), 0o755); err != nil {
			return nil, err
		}
		d, n, err := writeTar(tp, l, seed)
		if err != nil {
			return nil, err
		}
		img.LayerDirs = append(img.LayerDirs, ld)
		img.Tars = append(img.Tars, tp)
		diffs, sizes = append(diffs, d), append(sizes, n)
	}
	if err := writeLayout(img.Layout, img.Tars, diffs, sizes); err != nil {
		return nil, err
	}
	if merged {
		img.Merged = filepath.Join(dir, "merged")
		m := merge(layers)
		all := make(genLayer, 0, len(m))
		for _, e := range m {
			all = append(all, e)
		}
		sortLayer(all)
		if err := writeTree(img.Merged, all, seed); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// BuildDataset generates the dataset of spec under workDir, or reuses the
// one a previous run finished there. logf reports progress.
func BuildDataset(workDir string, spec Spec, logf func(string, ...any)) (*Dataset, error) {
	dir := filepath.Join(workDir, "data-"+spec.hash())
	ds := &Dataset{Spec: spec, Dir: dir}
	mainL, big := mainLayers(spec)
	ds.BigFile = big
	for p, e := range merge(mainL) {
		ds.Entries++
		if e.kind == 'f' && p != big {
			ds.SmallFiles = append(ds.SmallFiles, p)
		}
	}
	slices.Sort(ds.SmallFiles)
	done := filepath.Join(dir, "done")
	_, err := os.Stat(done)
	reuse := err == nil
	if reuse {
		logf("dataset: reusing %s", dir)
	} else {
		logf("dataset: generating %s (%d files in %d directories over %d layers, a %s file; depths %v)",
			dir, spec.Files, spec.Dirs, spec.Layers, fmtBytes(float64(spec.BigSize)), spec.Depths)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	build := func(sub, name string, layers []genLayer, merged bool) (*ImageData, error) {
		if reuse {
			return describeImage(filepath.Join(dir, sub), name, len(layers), merged), nil
		}
		return buildImage(filepath.Join(dir, sub), name, layers, spec.Seed, merged)
	}
	if ds.Main, err = build("main", "bench/main:latest", mainL, true); err != nil {
		return nil, err
	}
	var base *ImageData
	for _, n := range spec.Depths {
		layers := deepLayers(spec, n)
		if ds.DeepEntries == 0 {
			ds.DeepEntries = len(merge(layers))
		}
		img, err := build(fmt.Sprintf("depth-%d", n), fmt.Sprintf("bench/depth:%d", n), layers, n == 1)
		if err != nil {
			return nil, err
		}
		ds.Deep = append(ds.Deep, img)
		if n == 1 {
			base = img
		}
	}
	// Every depth image shows the same tree: native walks the one copy.
	if base != nil {
		for _, img := range ds.Deep {
			img.Merged = base.Merged
		}
	}
	if spec.DiskImages > 0 {
		if base == nil {
			return nil, fmt.Errorf("the disk workload needs depth 1 among the depths %v", spec.Depths)
		}
		for k := 0; k < spec.DiskImages; k++ {
			sub := filepath.Join(dir, fmt.Sprintf("disk-%d", k))
			img := &ImageData{Name: fmt.Sprintf("bench/disk:%d", k), Layout: filepath.Join(sub, "oci"),
				LayerDirs: []string{base.LayerDirs[0], filepath.Join(sub, "layers", "1")},
				Tars:      []string{base.Tars[0], filepath.Join(sub, "tars", "1.tar")}}
			if !reuse {
				if err := diskImage(spec, k, img); err != nil {
					return nil, err
				}
			}
			ds.Disk = append(ds.Disk, img)
		}
	}
	if !reuse {
		if err := os.WriteFile(filepath.Join(dir, "spec.json"), must(json.MarshalIndent(spec, "", "  ")), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(done, nil, 0o644); err != nil {
			return nil, err
		}
	}
	return ds, nil
}

func diskImage(spec Spec, k int, img *ImageData) error {
	app := appLayer(spec, k)
	if err := writeTree(img.LayerDirs[1], app, spec.Seed); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(img.Tars[1]), 0o755); err != nil {
		return err
	}
	var diffs []digest.Digest
	var sizes []int64
	for i, t := range img.Tars {
		var d digest.Digest
		var n int64
		var err error
		if i == 1 {
			d, n, err = writeTar(t, app, spec.Seed)
		} else {
			d, n, err = digestFile(t)
		}
		if err != nil {
			return err
		}
		diffs, sizes = append(diffs, d), append(sizes, n)
	}
	return writeLayout(img.Layout, img.Tars, diffs, sizes)
}

func digestFile(p string) (digest.Digest, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))), n, err
}

func describeImage(dir, name string, n int, merged bool) *ImageData {
	img := &ImageData{Name: name, Layout: filepath.Join(dir, "oci")}
	for i := 0; i < n; i++ {
		img.LayerDirs = append(img.LayerDirs, filepath.Join(dir, "layers", fmt.Sprint(i)))
		img.Tars = append(img.Tars, filepath.Join(dir, "tars", fmt.Sprintf("%d.tar", i)))
	}
	if merged {
		img.Merged = filepath.Join(dir, "merged")
	}
	return img
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// bigOffsetSeed seeds random reads.
func bigOffsetSeed(seed int64) uint64 {
	b := seedBytes(seed, "offsets")
	return binary.LittleEndian.Uint64(b[:8])
}
