package main

// Docker-style output: --format templates, tables, relative times.
//
// A --format value is used the way the docker CLI uses it: "table" followed by
// a template prints a header row (the column names of the fields the template
// uses) and aligns the columns; "json" is short for "{{json .}}"; anything
// else is a Go text/template executed once per row. The literal escapes \t
// and \n in a format stand for a tab and a newline.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
)

const (
	tableFormatKey = "table"
	jsonFormatKey  = "json"
	quietFormat    = "{{.ID}}"
)

// templateFuncs are the functions docker gives every --format template.
var templateFuncs = template.FuncMap{
	"json": func(v any) string {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(v)
		return strings.TrimSpace(buf.String())
	},
	"split": strings.Split,
	"join":  strings.Join,
	"title": func(s string) string { // ASCII only, as docker uses it
		var b strings.Builder
		prev := ' '
		for _, r := range s {
			if prev == ' ' && r >= 'a' && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			prev = r
		}
		return b.String()
	},
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"pad": func(s string, prefix, suffix int) string {
		if s == "" {
			return s
		}
		return strings.Repeat(" ", prefix) + s + strings.Repeat(" ", suffix)
	},
	"truncate": func(s string, n int) string {
		if len(s) < n {
			return s
		}
		return s[:n]
	},
}

// marshalRow encodes a row as docker's formatter does, with json.Marshal
// (so HTML-escaped), even inside {{json .}}, whose encoder does not escape.
// Row types call it from their MarshalJSON; it encodes the row as a struct
// type with the same fields and no methods, so it does not recurse.
func marshalRow(row any) ([]byte, error) {
	v := reflect.ValueOf(row)
	fields := make([]reflect.StructField, v.NumField())
	for i := range fields {
		fields[i] = v.Type().Field(i)
	}
	return json.Marshal(v.Convert(reflect.StructOf(fields)).Interface())
}

// headerFuncs replace templateFuncs when a table's header row is rendered,
// so that the header shows the column names untouched.
var headerFuncs = template.FuncMap{
	"json":     func(v string) string { return v },
	"split":    func(v, _ string) string { return v },
	"join":     func(v, _ string) string { return v },
	"title":    func(v string) string { return v },
	"lower":    func(v string) string { return v },
	"upper":    func(v string) string { return v },
	"truncate": func(v string, _ int) string { return v },
}

// parseTemplate parses a --format template with docker's functions.
func parseTemplate(format string) (*template.Template, error) {
	t, err := template.New("").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return nil, fmt.Errorf("template parsing error: %w", err)
	}
	return t, nil
}

// fieldErrRE finds the field and type a template execution failed on.
var fieldErrRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`can't evaluate field (\w+) in type (\S+)`) })

// execTemplate executes a --format template on v. A failure is reported as
// what it is, an execution error, naming the field the template asked for
// and those the value has, rather than text/template's words about Go types.
func execTemplate(t *template.Template, w io.Writer, v any) error {
	var buf bytes.Buffer
	err := t.Execute(&buf, v)
	if err == nil {
		_, err = buf.WriteTo(w)
		return err
	}
	var ee template.ExecError
	if !errors.As(err, &ee) {
		return fmt.Errorf("executing the --format template: %w", err)
	}
	text := t.Tree.Root.String()
	if m := fieldErrRE().FindStringSubmatch(err.Error()); m != nil {
		msg := fmt.Sprintf("executing the --format template %q: no field %q", text, m[1])
		if fields := fieldsOf(reflect.TypeOf(v), m[2], 0); fields != nil {
			msg += " (there are " + strings.Join(fields, ", ") + ")"
		}
		return errors.New(msg)
	}
	return fmt.Errorf("executing the --format template %q: %w", text, ee.Err)
}

// fieldsOf lists the exported fields of the type named name, found in t or
// the types of its fields.
func fieldsOf(t reflect.Type, name string, depth int) []string {
	if t == nil || depth > 4 {
		return nil
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		if t.String() == name {
			break
		}
		t = t.Elem()
	}
	st := t
	for st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	if st.Kind() != reflect.Struct {
		return nil
	}
	if t.String() == name || st.String() == name {
		var out []string
		for i := range st.NumField() {
			if f := st.Field(i); f.IsExported() {
				out = append(out, "."+f.Name)
			}
		}
		return out
	}
	for i := range st.NumField() {
		if out := fieldsOf(st.Field(i).Type, name, depth+1); out != nil {
			return out
		}
	}
	return nil
}

// rowFormatter renders rows through a --format and writes them out on flush.
type rowFormatter struct {
	table  bool
	tmpl   *template.Template
	header *template.Template // nil unless table
	names  map[string]string  // column name of each field, for the header
	rows   bytes.Buffer
}

// newRowFormatter prepares format; names gives the header of each field.
func newRowFormatter(format string, names map[string]string) (*rowFormatter, error) {
	f := &rowFormatter{names: names}
	switch {
	case strings.HasPrefix(format, tableFormatKey):
		f.table = true
		format = format[len(tableFormatKey):]
	case format == jsonFormatKey:
		format = "{{json .}}"
	}
	format = strings.Trim(format, " ")
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	t, err := parseTemplate(format)
	if err != nil {
		return nil, err
	}
	f.tmpl = t
	if f.table {
		h, err := template.New("").Funcs(templateFuncs).Funcs(headerFuncs).Parse(format)
		if err != nil {
			return nil, fmt.Errorf("template parsing error: %w", err)
		}
		f.header = h
	}
	return f, nil
}

// row renders one row.
func (f *rowFormatter) row(v any) error {
	if err := execTemplate(f.tmpl, &f.rows, v); err != nil {
		return err
	}
	f.rows.WriteByte('\n')
	return nil
}

// flush writes the header (for a table) and the rows, aligned as docker
// aligns them.
func (f *rowFormatter) flush(w io.Writer) error {
	if !f.table {
		_, err := f.rows.WriteTo(w)
		return err
	}
	tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	var head bytes.Buffer
	if err := f.header.Execute(&head, f.names); err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	head.WriteByte('\n')
	head.WriteTo(tw)
	f.rows.WriteTo(tw)
	return tw.Flush()
}

// truncateID is an image ID as docker shows it truncated: 12 hex digits.
func truncateID(id digest.Digest) string {
	h := id.Encoded()
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// displayID is id truncated unless noTrunc.
func displayID(id digest.Digest, noTrunc bool) string {
	if noTrunc {
		return id.String()
	}
	return truncateID(id)
}

// humanDuration says how long d is the way docker does ("About an hour",
// "3 days"), after go-units' HumanDuration.
func humanDuration(d time.Duration) string {
	seconds := int(d.Seconds())
	switch {
	case seconds < 1:
		return "Less than a second"
	case seconds == 1:
		return "1 second"
	case seconds < 60:
		return fmt.Sprintf("%d seconds", seconds)
	}
	minutes := int(d.Minutes())
	switch {
	case minutes == 1:
		return "About a minute"
	case minutes < 60:
		return fmt.Sprintf("%d minutes", minutes)
	}
	hours := int(d.Hours() + 0.5)
	switch {
	case hours == 1:
		return "About an hour"
	case hours < 48:
		return fmt.Sprintf("%d hours", hours)
	case hours < 24*7*2:
		return fmt.Sprintf("%d days", hours/24)
	case hours < 24*30*2:
		return fmt.Sprintf("%d weeks", hours/24/7)
	case hours < 24*365*2:
		return fmt.Sprintf("%d months", hours/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// createdSince is docker's CREATED column: "2 hours ago", or "" for a zero time.
func createdSince(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return humanDuration(now.Sub(t)) + " ago"
}

// ellipsis shortens s to at most n runes, the last of them "…" (docker's
// formatter.Ellipsis, counting every rune as one column).
func ellipsis(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	if n == 1 {
		return string(r[0])
	}
	return string(r[:n-1]) + "…"
}

// errorList is several errors that each deserve a line: main prints the
// first after "Error: ", and the rest follow, each with its own "Error: ".
type errorList []error

func (l errorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\nError: ")
}

func (l errorList) Unwrap() []error { return l }

// join returns nil, the only error, or the list.
func (l errorList) join() error {
	switch len(l) {
	case 0:
		return nil
	case 1:
		return l[0]
	}
	return l
}
