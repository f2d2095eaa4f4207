package session_test

import (
	"context"
	"testing"

	"github.com/strata-dev/strata/fs/testsuite"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// TestSuite runs fs's conformance suite against mount sessions: every mount
// is a session.Start (a lease, a top layer under the store's mounts/) and
// every unmount a Close, and the store checks clean after.
func TestSuite(t *testing.T) { testsuite.Run(t, mountSession) }

func mountSession(t *testing.T, st *layerstore.Store, ref, dir string, o testsuite.MountOptions) (*testsuite.Mount, error) {
	s, err := session.Start(context.Background(), st, ref, dir, session.Options{
		ReadOnly:      o.ReadOnly,
		NoPassthrough: !o.Passthrough,
		NoWriteback:   !o.Writeback,
		Suid:          true,
		Dev:           true,
	})
	if err != nil {
		return nil, err
	}
	m := &testsuite.Mount{Passthrough: s.Passthrough(), Writeback: s.Writeback(), Unmount: s.Close}
	if !o.ReadOnly {
		m.Upper = s.Upper()
	}
	return m, nil
}
