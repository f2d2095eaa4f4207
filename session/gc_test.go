package session_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/session"
)

// GC run over and over while sessions start (a strata mount, a container's
// run, a build step): a session's lease comes before its top layer, and GC
// must not take the top layer of one being made for a directory without a
// lease. Every session keeps its top layer and what is written through it.
func TestSession_StartDuringGC(t *testing.T) {
	needFUSE(t)
	st := openStore(t)
	const workers, each = 4, 25
	dirs := make([][]string, workers)
	for w := range dirs {
		for range each {
			dirs[w] = append(dirs[w], mountDir(t))
		}
	}
	gcs := storetest.WhileGC(t, st, workers, func(w int) error {
		for i, dir := range dirs[w] {
			s, err := session.Start(context.Background(), st, "demo", dir, session.Options{})
			if err != nil {
				return err
			}
			body := fmt.Sprintf("session %d.%d\n", w, i)
			err = os.WriteFile(filepath.Join(dir, "written"), []byte(body), 0o644)
			if err == nil {
				var b []byte
				b, err = os.ReadFile(filepath.Join(dir, "written"))
				if err == nil && string(b) != body {
					err = fmt.Errorf("read back %q", b)
				}
			}
			if err == nil {
				_, err = os.Stat(session.UpperDir(st, s.ID()))
			}
			if err != nil {
				err = fmt.Errorf("session %s on %s: its top layer: %w", s.ID(), dir, err)
			}
			if cerr := s.Close(); cerr != nil && err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("%d sessions against %d GC runs", workers*each, gcs)
	if ids := leases(t, st); len(ids) != 0 {
		t.Errorf("leases left: %v", ids)
	}
}
