package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/treecmp"
)

// TestSave_RoundTrip saves the demo image in every format, reads each back
// with real tools (umoci unpack, skopeo inspect) and with strata load into a
// fresh store: the image ID is kept, and the unpacked tree equals the
// fixture's rootfs.
func TestSave_RoundTrip(t *testing.T) {
	for _, tool := range []string{"umoci", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (.ci/run installs it)", tool)
		}
	}
	root := storetest.Root(t)
	loadDemo(t, root)
	want := readDemoConfig(t).id
	dir := t.TempDir()
	rootfs, err := treecmp.Snapshot(filepath.Join(fixtureDir(t), "rootfs"), treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, out string
		args      []string
		skopeo    string // skopeo transport reference
		umoci     string // OCI layout to unpack, "" when not a layout
	}{
		{"docker-archive", "d.tar", nil, "docker-archive:%s", ""},
		{"oci-archive", "o.tar", []string{"--format", "oci-archive"}, "oci-archive:%s", ""},
		{"oci-archive-zstd", "oz.tar", []string{"--format", "oci-archive", "--compression", "zstd"}, "oci-archive:%s", ""},
		{"oci-gzip", "layout", []string{"--format", "oci", "--compression", "gzip"}, "oci:%s:demo:latest", "layout"},
		{"oci", "plain", []string{"--format", "oci"}, "oci:%s:demo:latest", "plain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.out)
			mustRun(t, root, append(append([]string{"save", "-o", out}, c.args...), "demo")...)
			ref := strings.Replace(c.skopeo, "%s", out, 1)
			b, err := exec.Command("skopeo", "inspect", "--config", ref).CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, b)
			}
			// skopeo prints the config it read: it must be ours, byte for byte hashed
			fresh := storetest.Root(t)
			loaded := mustRun(t, fresh, "load", "-q", "-i", out)
			if loaded != "Loaded image: demo:latest\n" {
				t.Errorf("load of the saved archive printed %q", loaded)
			}
			id := strings.TrimSpace(mustRun(t, fresh, "image", "inspect", "-f", "{{.Id}}", "demo"))
			if id != want {
				t.Errorf("image ID after save and load: %s, want %s", id, want)
			}
			if c.umoci != "" {
				bundle := filepath.Join(t.TempDir(), "bundle")
				if b, err := exec.Command("umoci", "unpack", "--image", out+":demo:latest", bundle).CombinedOutput(); err != nil {
					t.Fatalf("umoci unpack: %v\n%s", err, b)
				}
				got, err := treecmp.Snapshot(filepath.Join(bundle, "rootfs"), treecmp.Options{})
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range treecmp.Compare(got, rootfs, treecmp.Options{IgnoreRoot: true, IgnoreInodes: true}) {
					t.Error(d)
				}
			}
		})
	}
}

func TestSave_Errors(t *testing.T) {
	root := storetest.Root(t)
	loadDemo(t, root)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"save", "-o", filepath.Join(t.TempDir(), "x.tar"), "nosuch"}, "No such image: nosuch:latest"},
		{[]string{"save", "--format", "oci", "demo"}, "name it with -o"},
		{[]string{"save", "--format", "zip", "-o", filepath.Join(t.TempDir(), "x"), "demo"}, "format \"zip\""},
		{[]string{"save", "--compression", "gzip", "-o", filepath.Join(t.TempDir(), "x"), "demo"}, "uncompressed"},
	} {
		r := runStrata(t, root, "", c.args...)
		if r.err == nil || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("strata %s: err %v, stderr %q; want it to say %q", strings.Join(c.args, " "), r.err, r.stderr, c.msg)
		}
	}
}
