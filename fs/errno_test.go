package fs

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-dev/strata/layerstore"
)

// TestToErrno_StoreSentinels checks that every sentinel error layerstore
// declares (read from its source, so a new one fails here until it is
// mapped) has its errno in storeErrnos, and that toErrno finds it through
// wrapping.
func TestToErrno_StoreSentinels(t *testing.T) {
	sentinels := map[string]error{
		"ErrNotFound":       layerstore.ErrNotFound,
		"ErrExists":         layerstore.ErrExists,
		"ErrAmbiguous":      layerstore.ErrAmbiguous,
		"ErrDigestMismatch": layerstore.ErrDigestMismatch,
		"ErrSizeMismatch":   layerstore.ErrSizeMismatch,
		"ErrCorrupt":        layerstore.ErrCorrupt,
		"ErrInvalid":        layerstore.ErrInvalid,
		"ErrInUse":          layerstore.ErrInUse,
		"ErrLocked":         layerstore.ErrLocked,
		"ErrUnknownFormat":  layerstore.ErrUnknownFormat,
		"ErrMissingBlob":    layerstore.ErrMissingBlob,
		"ErrDownloadBusy":   layerstore.ErrDownloadBusy,
		"ErrOverLimit":      layerstore.ErrOverLimit,
	}
	declared := declaredSentinels(t, filepath.Join("..", "layerstore"))
	if len(declared) == 0 {
		t.Fatal("found no sentinel errors in layerstore's source")
	}
	for _, name := range declared {
		if _, ok := sentinels[name]; !ok {
			t.Errorf("layerstore.%s is not in this test (nor, likely, in storeErrnos)", name)
		}
	}
	for name, err := range sentinels {
		if !slices.Contains(declared, name) {
			t.Errorf("layerstore.%s is in this test but layerstore no longer declares it", name)
		}
		i := slices.IndexFunc(storeErrnos, func(m struct {
			err   error
			errno syscall.Errno
		}) bool {
			return m.err == err
		})
		if i < 0 {
			t.Errorf("layerstore.%s has no errno in storeErrnos", name)
			continue
		}
		want := storeErrnos[i].errno
		wrapped := fmt.Errorf("object %s: %w", "sha256:abc", err)
		if got := toErrno(wrapped); got != want {
			t.Errorf("toErrno(wrapped %s) = %v, want %v", name, got, want)
		}
		if got := toErrno(errors.Join(errors.New("other"), wrapped)); got != want {
			t.Errorf("toErrno(joined %s) = %v, want %v", name, got, want)
		}
	}
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{syscall.ENAMETOOLONG, syscall.ENAMETOOLONG},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.ELOOP}, syscall.ELOOP},
		{os.ErrNotExist, syscall.ENOENT},
		{errors.New("unknown"), syscall.EIO},
	} {
		if got := toErrno(c.err); got != c.want {
			t.Errorf("toErrno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// declaredSentinels returns the names of the exported package-level Err*
// variables of the Go package in dir, tests left out.
func declaredSentinels(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	fset := token.NewFileSet()
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				for _, id := range s.(*ast.ValueSpec).Names {
					if strings.HasPrefix(id.Name, "Err") && id.IsExported() {
						names = append(names, id.Name)
					}
				}
			}
		}
	}
	slices.Sort(names)
	return names
}
