package build

import (
	"os"
	"path/filepath"
	"testing"
)

// An owner file is obeyed only when this user made it and its directory,
// and nobody else can write them: /tmp is everyone's.
func TestOurs(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "mine")
	if err := os.WriteFile(mine, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(mine, link); err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{mine: true, open: false, link: false, filepath.Join(dir, "missing"): false}
	if os.Geteuid() == 0 {
		other := filepath.Join(dir, "other")
		if err := os.WriteFile(other, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 1000, 1000); err != nil {
			t.Fatal(err)
		}
		cases[other] = false
	}
	for p, want := range cases {
		if got := ours(p); got != want {
			t.Errorf("ours(%s) = %v, want %v", filepath.Base(p), got, want)
		}
	}
}
