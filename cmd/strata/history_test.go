package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/strata-dev/strata/internal/storetest"
)

func TestHistory_Format(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	cfg := readDemoConfig(t)
	n := len(cfg.History)
	// The history, newest first, as the rows should show it.
	var wantBy []string
	nonEmpty := 0
	for i := n - 1; i >= 0; i-- {
		wantBy = append(wantBy, cfg.History[i].CreatedBy)
		if !cfg.History[i].EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty != len(cfg.DiffIDs) || nonEmpty != 5 {
		t.Fatalf("fixture: %d non-empty history entries, %d layers; want 5 each", nonEmpty, len(cfg.DiffIDs))
	}
	wantIDs := func(first string) []string {
		ids := []string{first}
		for range n - 1 {
			ids = append(ids, "<missing>")
		}
		return ids
	}

	t.Run("table", func(t *testing.T) {
		out := mustRun(t, root, "history", "demo")
		if same := mustRun(t, root, "image", "history", "demo"); same != out {
			t.Errorf("image history differs from history:\n%s\n%s", same, out)
		}
		header, rows := tableRows(t, out)
		if want := []string{"IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"}; !slices.Equal(header, want) {
			t.Errorf("header %q, want %q", header, want)
		}
		if len(rows) != n {
			t.Fatalf("%d rows, want %d (every history entry):\n%s", len(rows), n, out)
		}
		var ids, by []string
		for _, r := range rows {
			ids = append(ids, r[0])
			by = append(by, r[2])
		}
		if !slices.Equal(ids, wantIDs(cfg.shortID())) {
			t.Errorf("IMAGE column %q", ids)
		}
		var truncated []string
		for _, b := range wantBy {
			truncated = append(truncated, ellipsis(b, 45))
		}
		if !slices.Equal(by, truncated) {
			t.Errorf("CREATED BY column %q, want %q", by, truncated)
		}
	})

	t.Run("sizes", func(t *testing.T) {
		out := mustRun(t, root, "history", "-H=false", "--format", "{{.Size}}", "demo")
		human := strings.Fields(mustRun(t, root, "history", "--format", "{{.Size}}", "demo"))
		var sum int64
		for i, f := range strings.Fields(out) {
			size, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			h := cfg.History[n-1-i]
			if h.EmptyLayer && size != 0 {
				t.Errorf("row %d (%s): empty layer with size %d", i, h.CreatedBy, size)
			}
			if human[i] != humanSize(size, 3) {
				t.Errorf("row %d: human size %s, want %s", i, human[i], humanSize(size, 3))
			}
			sum += size
		}
		if want := demoSize(t, root); sum != want {
			t.Errorf("layer sizes sum to %d, image inspect Size is %d", sum, want)
		}
		if !slices.Contains(human, "0B") {
			t.Errorf("no 0B row for the empty layer: %q", human)
		}
	})

	t.Run("non-human", func(t *testing.T) {
		header, rows := tableRows(t, mustRun(t, root, "history", "-H=false", "demo"))
		if want := []string{"IMAGE", "CREATED AT", "CREATED BY", "SIZE", "COMMENT"}; !slices.Equal(header, want) {
			t.Errorf("header %q, want %q", header, want)
		}
		if len(rows[0]) < 2 || !strings.HasPrefix(rows[0][1], "20") || !strings.Contains(rows[0][1], "T") {
			t.Errorf("CREATED AT %q is not RFC 3339", rows[0])
		}
	})

	t.Run("quiet", func(t *testing.T) {
		out := mustRun(t, root, "history", "-q", "demo")
		if want := strings.Join(wantIDs(cfg.shortID()), "\n") + "\n"; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
		out = mustRun(t, root, "history", "-q", "--no-trunc", "demo")
		if want := strings.Join(wantIDs(cfg.id), "\n") + "\n"; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
	})

	t.Run("no-trunc", func(t *testing.T) {
		out := mustRun(t, root, "history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}", "demo")
		var want []string
		for i, b := range wantBy {
			want = append(want, wantIDs(cfg.id)[i]+"|"+b)
		}
		if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("json", func(t *testing.T) {
		out := mustRun(t, root, "history", "--format", "json", "demo")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != n {
			t.Fatalf("%d lines, want %d", len(lines), n)
		}
		var row map[string]string
		if err := json.Unmarshal([]byte(lines[1]), &row); err != nil {
			t.Fatal(err)
		}
		if row["ID"] != "<missing>" || !strings.Contains(lines[1], `"ID":"\u003cmissing\u003e"`) {
			t.Errorf("row %s: want ID <missing>, HTML-escaped as docker does", lines[1])
		}
		for _, k := range []string{"Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size"} {
			if _, ok := row[k]; !ok {
				t.Errorf("no %s in %s", k, lines[1])
			}
		}
	})

	t.Run("unknown image", func(t *testing.T) {
		r := runStrata(t, root, "", "history", "nosuch")
		if r.code != 1 || r.stderr != "Error: No such image: nosuch:latest\n" || r.stdout != "" {
			t.Errorf("code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}

// An imported image's one step says where it came from; the path is long
// enough to be cut at 45 characters with an ellipsis.
func TestHistory_Truncate(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	dir := filepath.Join(t.TempDir(), "a-directory-with-a-rather-long-name")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	b, err := os.ReadFile(filepath.Join(fixtureDir(t), "rootfs.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tarball, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, root, "import", "-q", "-m", "from the fixtures", tarball, "imp")
	full := "Imported from " + tarball

	got := strings.TrimSpace(mustRun(t, root, "history", "--format", "{{.CreatedBy}}|{{.Comment}}", "imp"))
	by, comment, _ := strings.Cut(got, "|")
	if utf8.RuneCountInString(by) != 45 || !strings.HasSuffix(by, "…") || !strings.HasPrefix(full, strings.TrimSuffix(by, "…")) {
		t.Errorf("CREATED BY %q: want the first 44 characters of %q and …", by, full)
	}
	if comment != "from the fixtures" {
		t.Errorf("COMMENT %q", comment)
	}
	got = strings.TrimSpace(mustRun(t, root, "history", "--no-trunc", "--format", "{{.CreatedBy}}", "imp"))
	if got != full {
		t.Errorf("--no-trunc: %q, want %q", got, full)
	}
}
