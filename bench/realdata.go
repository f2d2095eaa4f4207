package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Dataset kinds, as --dataset takes them.
const (
	// DatasetReal is the main image made of this machine's own trees
	// (RealSpec): real file names, sizes, link farms and directory shapes.
	DatasetReal = "real"
	// DatasetSynthetic is the generated main image (Spec).
	DatasetSynthetic = "synthetic"
)

// RealSpec is the real-image dataset: three layers made of trees of the
// machine the harness runs on, as an image built on a distribution would
// be. Layer 0 holds Base, layer 1 holds Apps and a file of BigSize bytes
// (big/blob.bin), and layer 2 changes what those hold: it replaces every
// 50th regular file, deletes every 97th (whiteouts) and makes one
// directory opaque with five new files in it.
type RealSpec struct {
	Base    []string `json:"base"`
	Apps    []string `json:"apps"`
	BigSize int64    `json:"bigSize"`
}

// FullRealSpec is the real dataset of a full run: /usr/share below,
// /usr/bin and /etc above, a 1 GiB file (about 55,000 entries on a Debian
// system).
func FullRealSpec() RealSpec {
	return RealSpec{Base: []string{"/usr/share"}, Apps: []string{"/usr/bin", "/etc"}, BigSize: 1 << 30}
}

// QuickRealSpec is the real dataset of --quick: /usr/share/doc below, /etc
// above, a 64 MiB file (about 7,000 entries on a Debian system).
func QuickRealSpec() RealSpec {
	return RealSpec{Base: []string{"/usr/share/doc"}, Apps: []string{"/etc"}, BigSize: 64 << 20}
}

func (s RealSpec) hash() string {
	b, _ := json.Marshal(struct {
		Format int
		RealSpec
	}{datasetFormat, s})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:6])
}

// realBigFile is where the big file sits in the real image.
const realBigFile = "big/blob.bin"

// buildReal makes (or reuses) the real image under workDir and returns it
// with its big file, entry count and small files. The source trees are
// copied once (cp -a) into the layers; everything after derives from that
// copy, so a tree that changes on the host meanwhile changes nothing.
func buildReal(workDir string, spec RealSpec, seed int64, logf func(string, ...any)) (*ImageData, []string, int, error) {
	dir := filepath.Join(workDir, "real-"+spec.hash())
	img := &ImageData{Name: "bench/real:latest", Layout: filepath.Join(dir, "oci"), Merged: filepath.Join(dir, "merged")}
	for i := range 3 {
		img.LayerDirs = append(img.LayerDirs, filepath.Join(dir, "layers", fmt.Sprint(i)))
		img.Tars = append(img.Tars, filepath.Join(dir, "tars", fmt.Sprintf("%d.tar", i)))
	}
	done := filepath.Join(dir, "done")
	if _, err := os.Stat(done); err == nil {
		logf("dataset: reusing the real image %s", dir)
	} else {
		logf("dataset: building the real image %s from %s + %s and a %s file", dir,
			strings.Join(spec.Base, " "), strings.Join(spec.Apps, " "), fmtBytes(float64(spec.BigSize)))
		t0 := time.Now()
		if err := os.RemoveAll(dir); err != nil {
			return nil, nil, 0, err
		}
		if err := makeReal(img, spec, seed); err != nil {
			return nil, nil, 0, fmt.Errorf("real dataset: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "spec.json"), must(json.MarshalIndent(spec, "", "  ")), 0o644); err != nil {
			return nil, nil, 0, err
		}
		if err := os.WriteFile(done, nil, 0o644); err != nil {
			return nil, nil, 0, err
		}
		logf("dataset: real image built in %s", time.Since(t0).Round(time.Second))
	}
	var small []string
	entries := 0
	err := filepath.WalkDir(img.Merged, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == img.Merged {
			return nil
		}
		entries++
		rel := p[len(img.Merged)+1:]
		if d.Type().IsRegular() && rel != realBigFile {
			small = append(small, rel)
		}
		return nil
	})
	if err != nil {
		return nil, nil, 0, err
	}
	slices.Sort(small)
	return img, small, entries, nil
}

// copyTree copies src into dst/<src without its leading slash> with cp -a.
func copyTree(src, dst string) error {
	rel := strings.TrimPrefix(filepath.Clean(src), "/")
	parent := filepath.Join(dst, filepath.Dir(rel))
	if err := mkdirs(dst, filepath.Dir(rel)); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", "--reflink=auto", src, parent+"/").CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s: %w: %s", src, err, lastLine(out))
	}
	return nil
}

// mkdirs makes the directories of rel under root, 0755 with the base time,
// the same in every layer so that every contender shows the same ones.
func mkdirs(root, rel string) error {
	if rel == "." || rel == "" {
		return os.MkdirAll(root, 0o755)
	}
	if err := mkdirs(root, filepath.Dir(rel)); err != nil {
		return err
	}
	p := filepath.Join(root, rel)
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	t := time.Unix(baseTime, 0)
	return os.Chtimes(p, t, t)
}

func makeReal(img *ImageData, spec RealSpec, seed int64) error {
	l0, l1, l2 := img.LayerDirs[0], img.LayerDirs[1], img.LayerDirs[2]
	for _, s := range spec.Base {
		if err := copyTree(s, l0); err != nil {
			return err
		}
	}
	for _, s := range spec.Apps {
		if err := copyTree(s, l1); err != nil {
			return err
		}
	}
	if err := mkdirs(l1, path.Dir(realBigFile)); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(l1, realBigFile), genEntry{mode: 0o644, mtime: baseTime, big: spec.BigSize}, seed); err != nil {
		return err
	}
	// The changes layer, from the lower layers' regular files in name order.
	var files []string
	dirKids := map[string]int{}
	for _, l := range []string{l0, l1} {
		err := filepath.WalkDir(l, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == l {
				return err
			}
			rel := p[len(l)+1:]
			dirKids[path.Dir(rel)]++
			if d.Type().IsRegular() && rel != realBigFile {
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	slices.Sort(files)
	files = slices.Compact(files)
	c := newContent(seed + 4000)
	var changes genLayer
	need := map[string]bool{}
	parents := func(p string) {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			need[d] = true
		}
	}
	// One directory of a few files (the first in name order with 5 to 50
	// entries) becomes opaque and gets new files.
	var opaque string
	for _, f := range files {
		if d := path.Dir(f); dirKids[d] >= 5 && dirKids[d] <= 50 && d != "." {
			opaque = d
			break
		}
	}
	for i, f := range files {
		if opaque != "" && strings.HasPrefix(f, opaque+"/") {
			continue
		}
		switch {
		case i%50 == 1:
			parents(f)
			changes = append(changes, genEntry{path: f, kind: 'f', mode: 0o644, mtime: baseTime + 2, data: c.bytes(f+"@2", c.size())})
		case i%97 == 2:
			parents(f)
			changes = append(changes, genEntry{path: f, kind: 'w'})
		}
	}
	if opaque != "" {
		parents(opaque + "/x")
		need[opaque] = true
		changes = append(changes, genEntry{path: opaque, kind: 'o'})
		for k := range 5 {
			p := fmt.Sprintf("%s/new%d.dat", opaque, k)
			changes = append(changes, genEntry{path: p, kind: 'f', mode: 0o644, mtime: baseTime + 2, data: c.bytes(p, c.size())})
		}
	}
	// Directories on the way keep their lower attributes: the top layer's
	// copy of a directory is what every contender shows.
	for d := range need {
		if d == opaque {
			changes = append(changes, genEntry{path: d, kind: 'd', mode: 0o755, mtime: baseTime + 2})
			continue
		}
		var st unix.Stat_t
		src := filepath.Join(l1, d)
		if unix.Lstat(src, &st) != nil {
			src = filepath.Join(l0, d)
			if err := unix.Lstat(src, &st); err != nil {
				return err
			}
		}
		changes = append(changes, genEntry{path: d, kind: 'd', mode: st.Mode & 0o7777, mtime: st.Mtim.Sec})
	}
	sortLayer(changes)
	if err := writeTree(l2, changes, seed); err != nil {
		return err
	}

	// Tars: the lower layers by GNU tar (real tar, real headers), the
	// changes layer by the generator (its whiteouts as .wh. names).
	var diffs []digest.Digest
	var sizes []int64
	for i, l := range []string{l0, l1} {
		if err := os.MkdirAll(filepath.Dir(img.Tars[i]), 0o755); err != nil {
			return err
		}
		ents, err := os.ReadDir(l)
		if err != nil {
			return err
		}
		args := []string{"-C", l, "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name", "-cf", img.Tars[i]}
		for _, e := range ents {
			args = append(args, e.Name())
		}
		if out, err := exec.Command("tar", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("tar -c %s: %w: %s", l, err, lastLine(out))
		}
		d, n, err := digestFile(img.Tars[i])
		if err != nil {
			return err
		}
		diffs, sizes = append(diffs, d), append(sizes, n)
	}
	d, n, err := writeTar(img.Tars[2], changes, seed)
	if err != nil {
		return err
	}
	diffs, sizes = append(diffs, d), append(sizes, n)
	if err := writeLayout(img.Layout, img.Tars, diffs, sizes); err != nil {
		return err
	}

	// The merged tree: the layers copied in order, the changes applied.
	m := img.Merged
	if err := os.MkdirAll(m, 0o755); err != nil {
		return err
	}
	for _, l := range []string{l0, l1} {
		if out, err := exec.Command("cp", "-a", "--reflink=auto", l+"/.", m+"/").CombinedOutput(); err != nil {
			return fmt.Errorf("cp -a %s: %w: %s", l, err, lastLine(out))
		}
	}
	var dirs []genEntry
	for _, e := range changes {
		p := filepath.Join(m, e.path)
		var err error
		switch e.kind {
		case 'w':
			err = os.RemoveAll(p)
		case 'o':
			var kids []os.DirEntry
			if kids, err = os.ReadDir(p); err == nil {
				for _, k := range kids {
					if err = os.RemoveAll(filepath.Join(p, k.Name())); err != nil {
						break
					}
				}
			}
		case 'f':
			os.Remove(p)
			err = writeFile(p, e, seed)
		case 'd':
			err = os.Chmod(p, os.FileMode(e.mode))
			dirs = append(dirs, e)
		}
		if err != nil {
			return fmt.Errorf("merged %s: %w", e.path, err)
		}
	}
	for _, e := range dirs {
		t := time.Unix(e.mtime, 0)
		if err := os.Chtimes(filepath.Join(m, e.path), t, t); err != nil {
			return err
		}
	}
	return nil
}
