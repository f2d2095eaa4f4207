package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
)

// TestCompletion_BashWithoutBashCompletion sources "strata completion bash"
// into a plain bash (no rc files, so no bash-completion package) and
// completes commands and image names, "name:tag" split by bash at the colon
// included.
func TestCompletion_BashWithoutBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	root := storetest.Root(t)
	loadDemo(t, root)
	script := filepath.Join(t.TempDir(), "strata.bash")
	if err := os.WriteFile(script, []byte(mustRun(t, root, "completion", "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		w := append([]string{self, "--root", root}, words...)
		var quoted []string
		for _, x := range w {
			quoted = append(quoted, "'"+x+"'")
		}
		prog := `source "$1"
declare -F _init_completion >/dev/null && echo "bash-completion is loaded" && exit 3
COMP_WORDS=(` + strings.Join(quoted, " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
__start_strata 2>/dev/null
echo "${COMPREPLY[*]}"`
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog, "bash", script)
		cmd.Env = append(os.Environ(), cliEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := complete("ima"); got != "image images" {
		t.Errorf("ima: %q", got)
	}
	if got := complete("rmi", "de"); got != "demo:latest" {
		t.Errorf("rmi de: %q", got)
	}
	// bash splits "demo:la" at the colon; the completion replaces "la".
	if got := complete("rmi", "demo", ":", "la"); got != "latest" {
		t.Errorf("rmi demo:la: %q", got)
	}
}
