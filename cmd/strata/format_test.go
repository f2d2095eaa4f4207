package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// The cases of go-units' HumanDuration tests: docker's CREATED column.
func TestHumanDuration(t *testing.T) {
	day := 24 * time.Hour
	week := 7 * day
	month := 30 * day
	year := 365 * day
	tests := []struct {
		d    time.Duration
		want string
	}{
		{450 * time.Millisecond, "Less than a second"},
		{time.Second, "1 second"},
		{45 * time.Second, "45 seconds"},
		{59 * time.Second, "59 seconds"},
		{60 * time.Second, "About a minute"},
		{3 * time.Minute, "3 minutes"},
		{35*time.Minute + 40*time.Second, "35 minutes"},
		{59 * time.Minute, "59 minutes"},
		{time.Hour, "About an hour"},
		{time.Hour + 29*time.Minute, "About an hour"},
		{time.Hour + 31*time.Minute, "2 hours"},
		{3*time.Hour + 29*time.Minute, "3 hours"},
		{3*time.Hour + 31*time.Minute, "4 hours"},
		{24 * time.Hour, "24 hours"},
		{day + 12*time.Hour, "36 hours"},
		{2 * day, "2 days"},
		{13*day + 5*time.Hour, "13 days"},
		{2 * week, "2 weeks"},
		{2*week + 4*day, "2 weeks"},
		{4*week + 3*day, "4 weeks"},
		{month, "4 weeks"},
		{month + 2*week, "6 weeks"},
		{2 * month, "2 months"},
		{5*month + 2*week, "5 months"},
		{24 * month, "24 months"},
		{24*month + 2*week, "2 years"},
		{3*year + 2*month, "3 years"},
	}
	for _, tt := range tests {
		if got := humanDuration(tt.d); got != tt.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	now := time.Now()
	if got := createdSince(now, now.Add(-2*time.Hour)); got != "2 hours ago" {
		t.Errorf("createdSince 2h: %q", got)
	}
	if got := createdSince(now, time.Time{}); got != "" {
		t.Errorf("createdSince of the zero time: %q", got)
	}
}

func TestEllipsis(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 45, "short"},
		{strings.Repeat("a", 45), 45, strings.Repeat("a", 45)},
		{strings.Repeat("a", 46), 45, strings.Repeat("a", 44) + "…"},
		{"héllo wörld", 5, "héll…"},
		{"abc", 1, "a"},
		{"abc", 0, ""},
	}
	for _, tt := range tests {
		if got := ellipsis(tt.s, tt.n); got != tt.want {
			t.Errorf("ellipsis(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestErrorList(t *testing.T) {
	a := &layerstore.NoSuchImageError{Ref: "a"}
	list := errorList{a, errors.New("second")}
	if got := "Error: " + list.join().Error(); got != "Error: No such image: a:latest\nError: second" {
		t.Errorf("%q", got)
	}
	if !errors.Is(list.join(), layerstore.ErrNotFound) || exitCode(list.join()) != 1 {
		t.Error("the list does not wrap its errors")
	}
	if (errorList{}).join() != nil || (errorList{a}).join() != error(a) {
		t.Error("join of zero or one error")
	}
}

func TestRowFormatter_Table(t *testing.T) {
	tests := []struct {
		name, format string
		rows         []map[string]string
		want         string
	}{
		{name: "header only", format: "table {{.A}}\t{{.B}}", want: "COL A     COL B\n"},
		{name: "widths", format: "table {{.A}}\t{{.B}}", rows: []map[string]string{{"A": "a-rather-long-cell", "B": "b"}},
			want: "COL A                COL B\na-rather-long-cell   b\n"},
		{name: "not a table", format: "{{.A}}", rows: []map[string]string{{"A": "1"}, {"A": "2"}}, want: "1\n2\n"},
		{name: "json", format: "json", rows: []map[string]string{{"A": "<1>"}}, want: "{\"A\":\"<1>\"}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := newRowFormatter(tt.format, map[string]string{"A": "COL A", "B": "COL B"})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tt.rows {
				if err := f.row(r); err != nil {
					t.Fatal(err)
				}
			}
			var out strings.Builder
			if err := f.flush(&out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("got %q, want %q", out.String(), tt.want)
			}
		})
	}
}

func TestCompletion_Images(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	mustRun(t, root, "tag", "demo", "other/x:1")
	short := readDemoConfig(t).shortID()
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"rmi", ""}, []string{"demo:latest", "other/x:1", short}},
		{[]string{"image", "inspect", "demo", "o"}, []string{"other/x:1"}},
		{[]string{"history", short[:3]}, []string{short}},
		{[]string{"history", "demo", ""}, nil},                         // one IMAGE only
		{[]string{"tag", "dem"}, []string{"demo:latest"}},              // "m" is no hex digit: no image ID matches
		{[]string{"images", ""}, []string{"demo:latest", "other/x:1"}}, // names, not IDs
	}
	for _, tt := range tests {
		out := mustRun(t, root, append([]string{"__complete"}, tt.args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got, directive := lines[:len(lines)-1], lines[len(lines)-1]
		if directive != ":4" { // ShellCompDirectiveNoFileComp
			t.Errorf("%q: directive %s", tt.args, directive)
		}
		if !slices.Equal(got, tt.want) && !(len(got) == 0 && tt.want == nil) {
			t.Errorf("%q: completions %q, want %q", tt.args, got, tt.want)
		}
	}
}
