package snapshotter

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/strata-dev/strata/layerstore"
)

// A filter is containerd's filter syntax, as far as snapshots use it:
// comma-separated terms that must all hold, each a field (name, parent,
// kind, labels.KEY; a part may be double-quoted) alone (it is set) or
// followed by ==, != or ~= (regular expression) and a value (may be quoted).
// Several filters match when any one does.
type filter []term

type term struct {
	field []string
	op    string
	value string
	re    *regexp.Regexp
}

type filters []filter

func parseFilters(ss []string) (filters, error) {
	var out filters
	for _, s := range ss {
		if strings.TrimSpace(s) == "" {
			continue
		}
		f, err := parseFilter(s)
		if err != nil {
			return nil, fmt.Errorf("filter %q: %w: %w", s, err, layerstore.ErrInvalid)
		}
		out = append(out, f)
	}
	return out, nil
}

func (fs filters) match(i Info) bool {
	if len(fs) == 0 {
		return true
	}
	for _, f := range fs {
		if f.match(i) {
			return true
		}
	}
	return false
}

func (f filter) match(i Info) bool {
	for _, t := range f {
		v, ok := fieldOf(i, t.field)
		switch t.op {
		case "":
			if !ok {
				return false
			}
		case "==":
			if !ok || v != t.value {
				return false
			}
		case "!=": // an absent field is "", as containerd has it
			if v == t.value {
				return false
			}
		case "~=":
			if !ok || !t.re.MatchString(v) {
				return false
			}
		}
	}
	return true
}

func fieldOf(i Info, path []string) (string, bool) {
	switch {
	case len(path) == 1 && path[0] == "name":
		return i.Name, true
	case len(path) == 1 && path[0] == "parent":
		return i.Parent, true
	case len(path) == 1 && path[0] == "kind":
		return i.Kind.String(), true
	case len(path) >= 2 && path[0] == "labels":
		v, ok := i.Labels[strings.Join(path[1:], ".")]
		return v, ok
	}
	return "", false
}

// parseFilter reads one filter.
func parseFilter(s string) (filter, error) {
	var f filter
	p := &scanner{s: s}
	for {
		var t term
		for {
			part, err := p.word(".,=!~")
			if err != nil {
				return nil, err
			}
			if part == "" {
				return nil, fmt.Errorf("empty field at %d", p.i)
			}
			t.field = append(t.field, part)
			if !p.eat(".") {
				break
			}
		}
		for _, op := range []string{"==", "!=", "~="} {
			if p.eat(op) {
				t.op = op
				v, err := p.word(",")
				if err != nil {
					return nil, err
				}
				t.value = v
				if op == "~=" {
					if t.re, err = regexp.Compile(v); err != nil {
						return nil, err
					}
				}
				break
			}
		}
		f = append(f, t)
		if p.i >= len(p.s) {
			return f, nil
		}
		if !p.eat(",") {
			return nil, fmt.Errorf("unexpected %q at %d", p.s[p.i:], p.i)
		}
	}
}

type scanner struct {
	s string
	i int
}

func (p *scanner) eat(tok string) bool {
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

// word reads a quoted string, or up to one of stop.
func (p *scanner) word(stop string) (string, error) {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
	if p.i < len(p.s) && (p.s[p.i] == '"' || p.s[p.i] == '\'') {
		q := p.s[p.i]
		j := p.i + 1
		for j < len(p.s) && p.s[j] != q {
			if p.s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(p.s) {
			return "", fmt.Errorf("unterminated quote at %d", p.i)
		}
		raw := p.s[p.i : j+1]
		p.i = j + 1
		if q == '\'' {
			return raw[1 : len(raw)-1], nil
		}
		return strconv.Unquote(raw)
	}
	j := p.i
	for j < len(p.s) && !strings.ContainsRune(stop, rune(p.s[j])) {
		j++
	}
	w := strings.TrimSpace(p.s[p.i:j])
	p.i = j
	return w, nil
}
