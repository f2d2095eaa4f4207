package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/storetest"
)

// demoSize is the image's size as image inspect reports it.
func demoSize(t *testing.T, root string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(mustRun(t, root, "image", "inspect", "-f", "{{.Size}}", "demo")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestImages_Format(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	mustRun(t, root, "tag", "demo", "other/x:1")
	storetest.CheckRoot(t, root)
	cfg := readDemoConfig(t)
	short := cfg.shortID()
	size := humanSize(demoSize(t, root), 3)
	// An image loaded from an archive has no repo digest (docker's too):
	// only a pull or a push records one.
	manifest := "<none>"
	if rd := strings.TrimSpace(mustRun(t, root, "image", "inspect", "-f", "{{json .RepoDigests}}", "demo")); rd != "[]" {
		t.Errorf("RepoDigests of a loaded image = %s, want []", rd)
	}

	tests := []struct {
		name   string
		args   []string
		header []string
		rows   [][]string // cells, CREATED left out when "-"
		exact  string     // whole output, when not a table
	}{
		{name: "default", args: []string{"images"},
			header: []string{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"},
			rows:   [][]string{{"demo", "latest", short, "-", size}, {"other/x", "1", short, "-", size}}},
		{name: "image ls", args: []string{"image", "ls"},
			header: []string{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"},
			rows:   [][]string{{"demo", "latest", short, "-", size}, {"other/x", "1", short, "-", size}}},
		{name: "image list -a", args: []string{"image", "list", "-a"},
			header: []string{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"},
			rows:   [][]string{{"demo", "latest", short, "-", size}, {"other/x", "1", short, "-", size}}},
		{name: "no-trunc", args: []string{"images", "--no-trunc"},
			header: []string{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"},
			rows:   [][]string{{"demo", "latest", cfg.id, "-", size}, {"other/x", "1", cfg.id, "-", size}}},
		{name: "digests", args: []string{"images", "--digests"},
			header: []string{"REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"},
			rows:   [][]string{{"demo", "latest", manifest, short, "-", size}, {"other/x", "1", manifest, short, "-", size}}},
		{name: "quiet", args: []string{"images", "-q"}, exact: short + "\n" + short + "\n"},
		{name: "quiet no-trunc", args: []string{"images", "-q", "--no-trunc"}, exact: cfg.id + "\n" + cfg.id + "\n"},
		{name: "template", args: []string{"images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}"},
			exact: fmt.Sprintf("demo:latest %s %s\nother/x:1 %s %s\n", short, size, short, size)},
		{name: "template with escapes", args: []string{"images", "--format", `{{.Repository}}\t{{.Tag}}`},
			exact: "demo\tlatest\nother/x\t1\n"},
		{name: "template funcs", args: []string{"images", "--format", `{{upper .Repository}} {{join (split .Repository "/") "."}} {{truncate .ID 4}}`},
			exact: fmt.Sprintf("DEMO demo %s\nOTHER/X other.x %s\n", short[:4], short[:4])},
		{name: "table template", args: []string{"images", "--format", `table {{.ID}}\t{{.Size}}`},
			exact: fmt.Sprintf("%-15s%s\n%-15s%s\n%-15s%s\n", "IMAGE ID", "SIZE", short, size, short, size)},
		{name: "table template digests", args: []string{"images", "--digests", "--format", `table {{.Tag}}`},
			exact: fmt.Sprintf("%-10s%s\n%-10s%s\n%-10s%s\n", "TAG", "DIGEST", "latest", manifest, "1", manifest)},
		{name: "table header funcs", args: []string{"images", "--format", `table {{upper .Repository}}`},
			exact: "REPOSITORY\nDEMO\nOTHER/X\n"},
		{name: "created at", args: []string{"images", "--format", `{{.CreatedAt}}`},
			exact: strings.Repeat(createdAt(t, root)+"\n", 2)},
		{name: "match name", args: []string{"images", "--format", "{{.Repository}}:{{.Tag}}", "other/x"}, exact: "other/x:1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustRun(t, root, tt.args...)
			if tt.header == nil {
				if out != tt.exact {
					t.Errorf("got\n%q\nwant\n%q", out, tt.exact)
				}
				return
			}
			header, rows := tableRows(t, out)
			if !slices.Equal(header, tt.header) {
				t.Errorf("header %q, want %q", header, tt.header)
			}
			if len(rows) != len(tt.rows) {
				t.Fatalf("%d rows, want %d:\n%s", len(rows), len(tt.rows), out)
			}
			for i, want := range tt.rows {
				got := slices.Clone(rows[i])
				for j := range want {
					if want[j] == "-" && j < len(got) {
						got[j] = "-"
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("row %d: %q, want %q", i, rows[i], want)
				}
			}
			// Docker aligns with tabwriter: every column but the last is at
			// least 10 wide, and 3 wider than its widest cell.
			if first := strings.SplitN(out, "\n", 2)[0]; !strings.HasPrefix(first, "REPOSITORY   TAG       ") {
				t.Errorf("header line %q is not aligned as docker's", first)
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		for _, format := range []string{"json", "{{json .}}"} {
			out := mustRun(t, root, "images", "--format", format)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("--format %s: %d lines:\n%s", format, len(lines), out)
			}
			// docker's formatter escapes HTML in rows.
			if !strings.Contains(lines[0], `"Digest":"\u003cnone\u003e"`) {
				t.Errorf("--format %s: %s: want the digest as docker escapes it", format, lines[0])
			}
			var row map[string]string
			if err := json.Unmarshal([]byte(lines[0]), &row); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"ID": short, "Repository": "demo", "Tag": "latest", "Size": size, "Digest": "<none>"}
			for k, v := range want {
				if row[k] != v {
					t.Errorf("--format %s: %s = %q, want %q", format, k, row[k], v)
				}
			}
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range row {
					if !yield(k) {
						return
					}
				}
			})
			wantKeys := []string{"Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository", "SharedSize", "Size", "Tag", "UniqueSize", "VirtualSize"}
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("keys %q, want docker's %q", keys, wantKeys)
			}
		}
	})

	t.Run("bad template", func(t *testing.T) {
		r := runStrata(t, root, "", "images", "--format", "{{.Nope")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: template parsing error: ") {
			t.Errorf("code %d, stderr %q", r.code, r.stderr)
		}
	})
}

// createdAt is the image's CreatedAt as docker prints it: local time, seconds.
func createdAt(t *testing.T, root string) string {
	t.Helper()
	out := strings.TrimSpace(mustRun(t, root, "image", "inspect", "-f", "{{.Created}}", "demo"))
	tm, err := time.Parse(time.RFC3339Nano, out)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(tm.Unix(), 0).String()
}

func TestImages_Filter(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	mustRun(t, root, "tag", "demo", "other/x:1")
	rootfs := filepath.Join(fixtureDir(t), "rootfs.tar")
	mustRun(t, root, "import", "-q", rootfs, "x:1")
	mustRun(t, root, "import", "-q", rootfs, "x:1") // the first one is now dangling
	storetest.CheckRoot(t, root)
	format := []string{"--format", "{{.Repository}}:{{.Tag}}"}

	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "none", want: "x:1 <none>:<none> demo:latest other/x:1"},
		{name: "dangling", args: []string{"-f", "dangling=true"}, want: "<none>:<none>"},
		{name: "not dangling", args: []string{"-f", "dangling=false"}, want: "x:1 demo:latest other/x:1"},
		{name: "dangling 1", args: []string{"--filter", "dangling=1"}, want: "<none>:<none>"},
		{name: "reference", args: []string{"-f", "reference=demo"}, want: "demo:latest"},
		{name: "reference glob", args: []string{"-f", "reference=*/x"}, want: "other/x:1"},
		{name: "reference tag glob", args: []string{"-f", "reference=*:1"}, want: "x:1"},
		{name: "references or", args: []string{"-f", "reference=demo", "-f", "reference=x"}, want: "x:1 demo:latest"},
		{name: "argument", args: []string{"x"}, want: "x:1"},
		{name: "argument with tag", args: []string{"demo:latest"}, want: "demo:latest"},
		{name: "argument no match", args: []string{"nosuch"}, want: ""},
		{name: "label", args: []string{"-f", "label=org.example.fixture"}, want: "demo:latest other/x:1"},
		{name: "label value", args: []string{"-f", "label=org.example.fixture=demo"}, want: "demo:latest other/x:1"},
		{name: "labels and", args: []string{"-f", "label=org.example.fixture=demo", "-f", "label=nope"}, want: ""},
		{name: "label other value", args: []string{"-f", "label=org.example.fixture=nope"}, want: ""},
		{name: "before", args: []string{"-f", "before=x:1"}, want: "<none>:<none> demo:latest other/x:1"},
		{name: "since", args: []string{"-f", "since=demo"}, want: "x:1 <none>:<none>"},
		{name: "since and dangling", args: []string{"-f", "since=demo", "-f", "dangling=false"}, want: "x:1"},
		{name: "unknown filter", args: []string{"-f", "bogus=1"}, wantErr: "Error: Invalid filter 'bogus'\n"},
		{name: "bad bool", args: []string{"-f", "dangling=maybe"}, wantErr: "Error: Invalid filter 'dangling=[maybe]'\n"},
		{name: "no value", args: []string{"-f", "dangling"}, wantErr: "Error: invalid argument \"dangling\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\n"},
		{name: "before unknown", args: []string{"-f", "before=nosuch"}, wantErr: "Error: No such image: nosuch:latest\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runStrata(t, root, "", append(append([]string{"images"}, format...), tt.args...)...)
			if tt.wantErr != "" {
				if r.code != 1 || r.stderr != tt.wantErr {
					t.Errorf("code %d, stderr %q; want 1, %q", r.code, r.stderr, tt.wantErr)
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if got := strings.Join(strings.Fields(r.stdout), " "); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
