package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
)

// refCases are names a command may be asked to tag an image with: good ones
// with what images lists for them, bad ones with what the error must say.
var refCases = []struct {
	ref, want, why string // want "" means refused, with why in the error
}{
	{ref: "demo", want: "demo:latest"},
	{ref: "docker.io/library/demo:latest", want: "demo:latest"},
	{ref: "localhost:5000/team/app:v1", want: "localhost:5000/team/app:v1"},
	{ref: "registry.example.com/a/b", want: "registry.example.com/a/b:latest"},
	{ref: "demo@sha256:" + strings.Repeat("a", 64), why: "refusing to create a tag with a digest reference"},
	{ref: "demo:v1@sha256:" + strings.Repeat("a", 64), why: "refusing to create a tag with a digest reference"},
	{ref: "Demo", why: "must be lowercase"},
	{ref: "demo:-x", why: `tag "-x"`},
	{ref: "a//b", why: `name component ""`},
}

// tinyRootfs writes a root filesystem tarball of one file.
func tinyRootfs(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("hi\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRefs_EveryCommand: import, load --tag, tag and commit check a name the
// same way (layerstore.ParseTag): a good one is stored normalized, a bad one
// (a digest reference above all: import used to store it as a tag) fails
// naming the problem and stores nothing.
func TestRefs_EveryCommand(t *testing.T) {
	t.Parallel()
	rootfs := tinyRootfs(t)
	layout := filepath.Join(fixtureDir(t), "oci")
	commands := map[string]func(t *testing.T, root, ref string) []string{
		"import": func(t *testing.T, root, ref string) []string {
			return []string{"import", "-q", rootfs, ref}
		},
		"load": func(t *testing.T, root, ref string) []string {
			// The fixture's one image is demo:latest; other good names
			// are not in it.
			return []string{"load", "-q", "-i", layout, "--tag", ref}
		},
		"tag": func(t *testing.T, root, ref string) []string {
			mustRun(t, root, "import", "-q", rootfs)
			return []string{"tag", strings.TrimSpace(mustRun(t, root, "images", "-q")), ref}
		},
		"commit": func(t *testing.T, root, ref string) []string {
			// The name is checked before the mount is looked for.
			return []string{"commit", filepath.Join(t.TempDir(), "nomount"), ref}
		},
	}
	for name, args := range commands {
		for _, tc := range refCases {
			t.Run(name+"/"+tc.ref, func(t *testing.T) {
				root := storetest.Root(t)
				r := runStrata(t, root, "", args(t, root, tc.ref)...)
				got := ""
				if _, err := os.Stat(root); err == nil {
					got = imageNames(t, root)
				}
				switch {
				case tc.want == "":
					if r.code != 1 || !strings.Contains(r.stderr, tc.why) || !strings.Contains(r.stderr, tc.ref) {
						t.Errorf("code %d, stderr %q; want 1 and %q naming %q", r.code, r.stderr, tc.why, tc.ref)
					}
					if strings.Contains(got, "@") || (name != "tag" && got != "") {
						t.Errorf("refused %q, but images lists %q", tc.ref, got)
					}
				case name == "commit":
					if r.code != 1 || !strings.Contains(r.stderr, "no strata mount") {
						t.Errorf("code %d, stderr %q; want the missing mount", r.code, r.stderr)
					}
				case name == "load" && tc.want != "demo:latest":
					if r.code != 1 || !strings.Contains(r.stderr, "has no image named "+tc.ref) {
						t.Errorf("code %d, stderr %q; want no image named %q", r.code, r.stderr, tc.ref)
					}
				default:
					if r.err != nil {
						t.Fatalf("%v\n%s", r.err, r.stderr)
					}
					if !strings.Contains(" "+got+" ", " "+tc.want+" ") {
						t.Errorf("images lists %q, want %q in it", got, tc.want)
					}
				}
			})
		}
	}
}

// TestRefs_CommitGoodNames: commit stores a good name normalized.
func TestRefs_CommitGoodNames(t *testing.T) {
	root := storetest.Root(t)
	loadDemo(t, root)
	dir, _ := startMount(t, root)
	for _, tc := range refCases {
		if tc.want == "" {
			continue
		}
		mustRun(t, root, "commit", dir, tc.ref)
		if got := imageNames(t, root); !strings.Contains(" "+got+" ", " "+tc.want+" ") {
			t.Errorf("commit %q: images lists %q, want %q in it", tc.ref, got, tc.want)
		}
	}
}
