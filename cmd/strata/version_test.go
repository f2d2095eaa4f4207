package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/strata-dev/strata/layerstore"
)

// TestVersion: "strata version" and "strata --version" print the same
// lines: version, commit, Go version, passthrough and the store format; and
// neither creates the store.
func TestVersion(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	a := mustRun(t, root, "version")
	b := mustRun(t, root, "--version")
	if a != b {
		t.Errorf("version and --version differ:\n%s\n%s", a, b)
	}
	for _, want := range []string{"strata version ", "\n Git commit: ", "\n Go version:       " + runtime.Version() + "\n",
		"\n FUSE passthrough: ", "\n Store format:     " + layerstore.FormatVersion + " (store " + root + ": not created yet)\n"} {
		if !strings.Contains(a, want) {
			t.Errorf("version output lacks %q:\n%s", want, a)
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("version made the store: %v", err)
	}

}

// TestHelp_Examples: the store commands' help shows examples.
func TestHelp_Examples(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	for _, args := range [][]string{{"check", "--help"}, {"gc", "--help"}, {"system", "df", "--help"}} {
		out := mustRun(t, root, args...)
		if !strings.Contains(out, "\nExamples:\n  strata ") {
			t.Errorf("strata %s: no examples:\n%s", strings.Join(args, " "), out)
		}
	}
}
