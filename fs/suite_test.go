package fs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-dev/strata/fs"
	"github.com/strata-dev/strata/fs/testsuite"
	"github.com/strata-dev/strata/layerstore"
)

// TestSuite runs the conformance suite against fs.Mount itself: the image's
// tree and objects straight from the store, a top layer in a temporary
// directory, no lease.
func TestSuite(t *testing.T) { testsuite.Run(t, mountFS) }

func mountFS(t *testing.T, st *layerstore.Store, ref, dir string, o testsuite.MountOptions) (*testsuite.Mount, error) {
	_, tree, err := st.ImageTree(ref)
	if err != nil {
		return nil, err
	}
	var upper string
	if !o.ReadOnly {
		upper = filepath.Join(t.TempDir(), "upper")
		if err := os.Mkdir(upper, 0o700); err != nil {
			return nil, err
		}
	}
	srv, err := fs.Mount(dir, tree, &fs.Options{
		ReadOnly:    o.ReadOnly,
		Upper:       upper,
		Objects:     st.ObjectPath,
		Passthrough: o.Passthrough,
		Writeback:   o.Writeback,
		Suid:        true,
		Dev:         true,
		FsName:      "strata-suite",
	})
	if err != nil {
		return nil, err
	}
	return &testsuite.Mount{Upper: upper, Passthrough: srv.Passthrough(), Writeback: srv.Writeback(), Unmount: srv.Unmount}, nil
}
