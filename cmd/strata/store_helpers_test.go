package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
)

// result is what one run of the CLI printed and how it would exit.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

// runStrata runs the root command in-process against the store at root, as
// main would: an error is printed to stderr after "Error: ".
func runStrata(t *testing.T, root, stdin string, args ...string) result {
	t.Helper()
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(append([]string{"--root", root, "--lock-timeout", "5"}, args...))
	err := cmd.Execute()
	r := result{err: err}
	if err != nil {
		if msg := err.Error(); msg != "" { // "" is a bare exit status, as main prints it
			errb.WriteString("Error: " + msg + "\n")
		}
		r.code = exitCode(err)
	}
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

// mustRun is runStrata that fails the test unless the command succeeds.
func mustRun(t *testing.T, root string, args ...string) string {
	t.Helper()
	r := runStrata(t, root, "", args...)
	if r.err != nil {
		t.Fatalf("strata %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// fixtureDir is where the fixture images are.
func fixtureDir(t *testing.T) string {
	t.Helper()
	return fixtures.Dir(t)
}

// loadDemo loads the fixture image (demo:latest) from its OCI layout and
// checks the store.
func loadDemo(t *testing.T, root string) {
	t.Helper()
	out := mustRun(t, root, "load", "-q", "-i", filepath.Join(fixtureDir(t), "oci"))
	if out != "Loaded image: demo:latest\n" {
		t.Fatalf("load printed %q", out)
	}
	storetest.CheckRoot(t, root)
}

// demoConfig is the fixture image's config, read from the OCI layout; id is
// the sha256 of its bytes, computed here.
type demoConfig struct {
	id      string
	raw     []byte
	DiffIDs []string
	History []struct {
		CreatedBy  string `json:"created_by"`
		EmptyLayer bool   `json:"empty_layer"`
		Comment    string `json:"comment"`
	}
	Labels map[string]string
}

func readDemoConfig(t *testing.T) demoConfig {
	t.Helper()
	dir := filepath.Join(fixtureDir(t), "oci")
	blob := func(d string) []byte {
		alg, hexd, _ := strings.Cut(d, ":")
		b, err := os.ReadFile(filepath.Join(dir, "blobs", alg, hexd))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var index struct {
		Manifests []struct{ Digest string }
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d manifests", err, len(index.Manifests))
	}
	var manifest struct {
		Config struct{ Digest string }
	}
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil {
		t.Fatal(err)
	}
	raw := blob(manifest.Config.Digest)
	sum := sha256.Sum256(raw)
	c := demoConfig{id: "sha256:" + hex.EncodeToString(sum[:]), raw: raw}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []struct {
			CreatedBy  string `json:"created_by"`
			EmptyLayer bool   `json:"empty_layer"`
			Comment    string `json:"comment"`
		} `json:"history"`
		Config struct{ Labels map[string]string } `json:"config"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	c.DiffIDs = cfg.RootFS.DiffIDs
	c.Labels = cfg.Config.Labels
	for _, h := range cfg.History {
		c.History = append(c.History, h)
	}
	return c
}

func (c demoConfig) shortID() string { return strings.TrimPrefix(c.id, "sha256:")[:12] }

var columnSep = regexp.MustCompile(`\s{3,}`)

// tableRows splits a docker-style table into its header and rows of cells
// (columns are at least three spaces apart; a trailing empty cell is dropped).
func tableRows(t *testing.T, out string) (header []string, rows [][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("no table in %q", out)
	}
	split := func(l string) []string { return columnSep.Split(strings.TrimRight(l, " "), -1) }
	header = split(lines[0])
	for _, l := range lines[1:] {
		rows = append(rows, split(l))
	}
	return header, rows
}

// inspectDoc runs image inspect on one image and decodes the result.
func inspectDoc(t *testing.T, root, ref string) map[string]any {
	t.Helper()
	var docs []map[string]any
	out := mustRun(t, root, "image", "inspect", ref)
	if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) != 1 {
		t.Fatalf("inspect %s: %v, %d documents:\n%s", ref, err, len(docs), out)
	}
	return docs[0]
}

// objectFiles counts the files under the store's objects directory.
func objectFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(root, "objects"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
