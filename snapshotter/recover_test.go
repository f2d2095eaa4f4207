package snapshotter

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/session"
)

// Open after a crash at each point between the steps of Prepare, Commit
// and Remove leaves records, leases and tags agreeing, and the store clean.
func TestOpen_RecoversCrashPoints(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts")
	}
	ctx := context.Background()
	st := storetest.Open(t) // checked after the snapshotter is closed
	sn, err := Open(ctx, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sn != nil {
			if err := sn.Close(); err != nil {
				t.Error(err)
			}
		}
	})
	// A committed base with a file, as an import leaves it.
	m, err := sn.Prepare(ctx, "base-work", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m[0].Source, "f"), []byte("base\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "base", "base-work", nil); err != nil {
		t.Fatal(err)
	}

	// Crash 1: Prepare wrote its record, the mount was never made.
	now := time.Now()
	lost := &record{Info: Info{Name: "no-mount", Kind: KindActive, Parent: "base", Created: now, Updated: now}, Mount: mountPrefix + session.NewID()}
	baseRec, err := sn.get("base")
	if err != nil {
		t.Fatal(err)
	}
	lost.Image = baseRec.Image
	if err := sn.db.Update(func(tx *bolt.Tx) error { return putRecord(tx, lost) }); err != nil {
		t.Fatal(err)
	}
	// Crash 2: Commit stored its tagged image, the records were not
	// swapped yet (the active snapshot stays, the image goes).
	m, err = sn.Prepare(ctx, "half-committed", "base", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m[0].Source, "g"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := sn.sessions["half-committed"].Record()
	if _, err := session.Commit(ctx, st, &rec, session.CommitOptions{Names: []string{tagOf("never")}}); err != nil {
		t.Fatal(err)
	}
	// Crash 3: Remove dropped the record, or Commit swapped the records and
	// answered, and the mount and its lease stayed.
	if _, err := sn.Prepare(ctx, "half-removed", "base", nil); err != nil {
		t.Fatal(err)
	}
	if err := sn.db.Update(func(tx *bolt.Tx) error { return snapshots(tx).Delete([]byte("half-removed")) }); err != nil {
		t.Fatal(err)
	}

	// The "crash": the mounts end as a killed server's would, records and
	// leases stay as they are.
	for name, s := range sn.sessions {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		delete(sn.sessions, name)
	}
	if err := sn.db.Close(); err != nil {
		t.Fatal(err)
	}
	sn = nil
	sn, err = Open(ctx, st, Options{})
	if err != nil {
		t.Fatal(err)
	}

	var names []string
	if err := sn.Walk(ctx, func(i Info) error { names = append(names, i.Name+":"+i.Kind.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(names, " "), "base:committed half-committed:active no-mount:active"; got != want {
		t.Errorf("snapshots after recovery: %s, want %s", got, want)
	}
	for key, want := range map[string]string{"no-mount": "base\n", "half-committed": "kept\n"} {
		ms, err := sn.Mounts(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		f := map[string]string{"no-mount": "f", "half-committed": "g"}[key]
		got, err := os.ReadFile(filepath.Join(ms[0].Source, f))
		if err != nil || string(got) != want {
			t.Errorf("%s: %s = %q, %v; want %q", key, f, got, err, want)
		}
	}
	if _, err := st.ResolveImage(tagOf("never")); err == nil {
		t.Error("the image of the commit that never finished is still tagged")
	}
	leases, err := st.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 2 {
		t.Errorf("%d leases after recovery, want 2 (the two active snapshots): %v", len(leases), leases)
	}
	for _, k := range []string{"no-mount", "half-committed", "base"} {
		if err := sn.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
}
