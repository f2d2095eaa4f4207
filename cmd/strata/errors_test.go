package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
)

// TestErrors_SayWhatToDo: bad input is refused with what was wrong (and,
// where there is one, what to do instead), and nothing is stored.
func TestErrors_SayWhatToDo(t *testing.T) {
	root := storetest.Root(t)
	loadDemo(t, root)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.tar")
	notTar := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notTar, []byte("hello, not a tarball\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(fixtureDir(t), "rootfs.tar")
	missing := filepath.Join(dir, "missing", "x.tar")
	tests := []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"save", "-o", missing, "demo"}, "", "Error: save -o " + missing + ": invalid output path: stat " + filepath.Dir(missing) + ": no such file or directory\n"},
		{[]string{"save", "--compression", "zstd", "demo"}, "", "Error: --compression zstd: a docker-archive's layers are always uncompressed (docker load reads them so); use --format oci-archive or --format oci for zstd layers: invalid\n"},
		{[]string{"load", "-i", rootfs}, "", `strata import ` + rootfs + ` NAME[:TAG]" makes one of it)`},
		{[]string{"import", empty, "e:1"}, "", "Error: import " + empty + ": the tarball is empty (0 bytes): want a tar of a root filesystem: invalid\n"},
		{[]string{"import", "-", "e:1"}, "", "Error: import from standard input: the tarball is empty (0 bytes)"},
		{[]string{"import", notTar, "e:1"}, "", "Error: import " + notTar + ": not a tar archive (unexpected EOF): want a tar of a root filesystem, plain, gzip or zstd: invalid\n"},
		{[]string{"import", "-", "e:1"}, "not a tar, from a pipe", "Error: import from standard input: not a tar archive"},
		{[]string{"images", "bad::name"}, "", `Error: invalid reference "bad::name": name component "bad:"`},
		{[]string{"images", "de[mo"}, "", `Error: invalid reference pattern "de[mo": syntax error in pattern`},
		{[]string{"images", "Demo*"}, "", `Error: invalid reference pattern "Demo*": no image name can match it`},
		{[]string{"images", "--format", "{{.Nope}}"}, "", `Error: executing the --format template "{{.Nope}}": no field "Nope" (there are .Containers, .CreatedAt,`},
	}
	for _, tt := range tests {
		r := runStrata(t, root, tt.stdin, tt.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("strata %s: exit %d\nstderr %q\nwant   %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
		}
		if got := imageNames(t, root); got != "demo:latest" {
			t.Errorf("strata %s: images %q afterwards", strings.Join(tt.args, " "), got)
		}
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Errorf("save -o made %s: %v", filepath.Dir(missing), err)
	}
	// Patterns that can match are taken.
	if got := mustRun(t, root, "images", "--format", "{{.Repository}}", "de*"); got != "demo\n" {
		t.Errorf("images de*: %q", got)
	}
	// A valid empty archive is an image without files, as in docker.
	emptyTar := filepath.Join(dir, "emptyarchive.tar")
	if err := os.WriteFile(emptyTar, make([]byte, 1024), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, root, "import", "-q", emptyTar, "e:2")
	if got := mustRun(t, root, "images", "--format", "{{.Size}}", "e:2"); got != "0B\n" {
		t.Errorf("empty archive: size %q", got)
	}
}
