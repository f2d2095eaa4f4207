package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// anObject is the path of one stored object file and its digest.
func anObject(t *testing.T, root string) (string, digest.Digest) {
	t.Helper()
	var found string
	filepath.WalkDir(filepath.Join(root, "objects"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && found == "" {
			if fi, err := d.Info(); err == nil && fi.Size() > 0 {
				found = p
			}
		}
		return nil
	})
	if found == "" {
		t.Fatal("no object file")
	}
	return found, digest.NewDigestFromEncoded(digest.SHA256, filepath.Base(filepath.Dir(found))+filepath.Base(found))
}

func TestCheck_Report(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	summary := regexp.MustCompile(`(?m)^checked metadata and object (sizes|contents) of 1 image, 5 layers, 1 tree, \d+ objects, 0 mounts: (\d+ problems?), (\d+ pieces? of garbage)\n\z`)

	t.Run("clean", func(t *testing.T) {
		for _, args := range [][]string{{"check"}, {"check", "--contents"}} {
			r := runStrata(t, root, "", args...)
			m := summary.FindStringSubmatch(r.stdout)
			if r.code != 0 || m == nil || m[2] != "0 problems" || m[3] != "0 pieces of garbage" || strings.Count(r.stdout, "\n") != 1 {
				t.Errorf("%s: code %d, stdout %q", args, r.code, r.stdout)
			}
		}
	})

	t.Run("garbage", func(t *testing.T) {
		junk := filepath.Join(root, "objects", "ab", strings.Repeat("c", 62))
		if err := os.WriteFile(junk, []byte("junk"), 0o444); err != nil {
			t.Fatal(err)
		}
		r := runStrata(t, root, "", "check")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "garbage: unreferenced object "+junk+"\n") || !strings.Contains(r.stdout, "0 problems, 1 piece of garbage") {
			t.Errorf("code %d, stdout %q", r.code, r.stdout)
		}
		out := mustRun(t, root, "gc")
		if !strings.HasPrefix(out, "Removed 1 object file\nTotal reclaimed space: ") {
			t.Errorf("gc printed %q", out)
		}
		if _, err := os.Stat(junk); !os.IsNotExist(err) {
			t.Errorf("gc left %s: %v", junk, err)
		}
		storetest.CheckRoot(t, root)
	})

	t.Run("missing object", func(t *testing.T) {
		p, d := anObject(t, root)
		aside := filepath.Join(t.TempDir(), "aside")
		if err := os.Rename(p, aside); err != nil {
			t.Fatal(err)
		}
		r := runStrata(t, root, "", "check")
		if err := os.Rename(aside, p); err != nil {
			t.Fatal(err)
		}
		if r.code != 1 || !strings.Contains(r.stdout, "problem: object "+d.String()+": file missing\n") ||
			r.stderr != "Error: store "+root+" has 1 problem\n" {
			t.Errorf("code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		storetest.CheckRoot(t, root)
	})

	t.Run("changed content", func(t *testing.T) {
		p, d := anObject(t, root)
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bad := []byte(strings.Repeat("x", len(orig)))
		if err := os.WriteFile(p, bad, 0o444); err != nil {
			t.Fatal(err)
		}
		sizes := runStrata(t, root, "", "check")
		contents := runStrata(t, root, "", "check", "--contents")
		if err := os.WriteFile(p, orig, 0o444); err != nil {
			t.Fatal(err)
		}
		if sizes.code != 0 {
			t.Errorf("check without --contents: code %d, %q", sizes.code, sizes.stdout)
		}
		if contents.code != 1 || !strings.Contains(contents.stdout, "problem: object "+d.String()+": content hashes to ") {
			t.Errorf("check --contents: code %d, %q", contents.code, contents.stdout)
		}
		storetest.CheckRoot(t, root)
	})
}

// addMount records a mount lease of image ref as if a server with pid ran it.
func addMount(t *testing.T, root, id, ref string, pid int) layerstore.MountRecord {
	t.Helper()
	s, err := layerstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	img, err := s.ResolveImage(ref)
	if err != nil {
		t.Fatal(err)
	}
	m := layerstore.MountRecord{ID: id, Image: img.ID, Ref: ref, Layers: img.Layers, ChainID: img.ChainID, Dir: t.TempDir(), PID: pid}
	if pid > 0 {
		if m.PIDStart, err = layerstore.ProcessStart(pid); err != nil {
			t.Fatal(err)
		}
	} else {
		// A stale lease: its server was a process that has exited.
		c := exec.Command("true")
		if err := c.Run(); err != nil {
			t.Fatal(err)
		}
		m.PID, m.PIDStart = c.Process.Pid, 1
	}
	if err := s.AddMount(m); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.MountDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.MountDir(id), "upper-file"), []byte("written in the mount\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}
