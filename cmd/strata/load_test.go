package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
)

// TestLoad_OCIBareTag: an OCI layout whose ref.name is only a tag loads as
// podman names it, localhost/<layout name>:<tag>, from a directory and from
// an oci-archive; a bare word that can be a name stays the name (skopeo's
// oci:DIR:demo), and from standard input a bare tag names nothing.
func TestLoad_OCIBareTag(t *testing.T) {
	root := storetest.Root(t)
	dir := t.TempDir()
	layout := filepath.Join(dir, "My_App")
	if out, err := exec.Command("cp", "-a", filepath.Join(fixtureDir(t), "oci"), layout).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	setRefName := func(ref string) {
		t.Helper()
		p := filepath.Join(layout, "index.json")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var idx map[string]any
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
		m := idx["manifests"].([]any)[0].(map[string]any)
		m["annotations"] = map[string]string{"org.opencontainers.image.ref.name": ref}
		b, _ = json.Marshal(idx)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ ref, want string }{
		{"v1.0.1", "Loaded image: localhost/my_app:v1.0.1\n"},
		{"latest", "Loaded image: localhost/my_app:latest\n"},
		{"Stable", "Loaded image: localhost/my_app:Stable\n"},
		{"demo", "Loaded image: demo:latest\n"},
		{"registry.example/app:2", "Loaded image: registry.example/app:2\n"},
	} {
		setRefName(tt.ref)
		if got := mustRun(t, root, "load", "-q", "-i", layout); got != tt.want {
			t.Errorf("ref.name %q: %q, want %q", tt.ref, got, tt.want)
		}
	}
	setRefName("v2")
	archive := filepath.Join(dir, "tools.oci.tar")
	if out, err := exec.Command("tar", "-C", layout, "-cf", archive, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	if got := mustRun(t, root, "load", "-q", "-i", archive); got != "Loaded image: localhost/tools:v2\n" {
		t.Errorf("oci-archive: %q", got)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := os.ReadFile(archive)
	if r := runStrata(t, root, string(b), "load", "-q"); r.err != nil || !strings.HasPrefix(r.stdout, "Loaded image ID: sha256:") {
		t.Errorf("from standard input: %v %q", r.err, r.stdout)
	}
}
