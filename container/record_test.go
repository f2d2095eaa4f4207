package container

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-dev/strata/layerstore"
)

func openRecords(t *testing.T) *Records {
	t.Helper()
	r, err := OpenRecords(filepath.Join(t.TempDir(), "containers"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRecords_CreateGetListRemove(t *testing.T) {
	r := openRecords(t)
	a := &Record{Name: "web", ImageRef: "demo", Created: time.Now()}
	if err := r.Create(a); err != nil {
		t.Fatal(err)
	}
	if len(a.ID) != 64 {
		t.Errorf("ID %q", a.ID)
	}
	b := &Record{ImageRef: "demo", Created: time.Now().Add(time.Second)}
	if err := r.Create(b); err != nil {
		t.Fatal(err)
	}
	if !validName().MatchString(b.Name) || !strings.Contains(b.Name, "_") {
		t.Errorf("made-up name %q", b.Name)
	}
	for _, ref := range []string{"web", "/web", a.ID, a.ID[:12]} {
		got, err := r.Get(ref)
		if err != nil || got.ID != a.ID {
			t.Errorf("Get(%q) = %v, %v", ref, got, err)
		}
	}
	if _, err := r.Get("nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nosuch): %v", err)
	}
	if _, err := r.Get("../containers"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(..): %v", err)
	}
	list, err := r.List()
	if err != nil || len(list) != 2 || list[0].ID != b.ID || list[1].ID != a.ID {
		t.Fatalf("List: %v, %v (want newest first)", list, err)
	}

	if _, err := r.Update(a.ID, func(rec *Record) error {
		rec.State = State{Status: Exited, ExitCode: 3}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get("web"); got.State.Status != Exited || got.State.ExitCode != 3 {
		t.Errorf("after Update: %+v", got.State)
	}

	if err := r.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.Dir(a.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory left after Remove: %v", err)
	}
	if _, err := r.Get("web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	// The name is free again.
	if err := r.Create(&Record{Name: "web"}); err != nil {
		t.Errorf("reuse of a removed container's name: %v", err)
	}
}

func TestRecords_Names(t *testing.T) {
	r := openRecords(t)
	for _, bad := range []string{"-x", "a", "a b", "a/b", "x:y"} {
		if err := r.Create(&Record{Name: bad}); err == nil || !strings.Contains(err.Error(), "invalid container name") {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	// Many processes' worth of racing creates: one name, one winner.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- r.Create(&Record{Name: "db"})
		}()
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrNameInUse) || !strings.Contains(err.Error(), `the container name "/db" is already in use`):
			t.Errorf("losing create: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d creates of one name won, want 1", won)
	}
	if list, _ := r.List(); len(list) != 1 {
		t.Errorf("%d records after the race, want 1", len(list))
	}
}

func TestRecords_AmbiguousPrefix(t *testing.T) {
	r := openRecords(t)
	for _, id := range []string{"ab" + strings.Repeat("1", 62), "ab" + strings.Repeat("2", 62)} {
		if err := r.Create(&Record{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Get("ab"); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("Get(ab): %v, want ambiguous", err)
	}
	if got, err := r.Get("ab1"); err != nil || !strings.HasPrefix(got.ID, "ab1") {
		t.Errorf("Get(ab1): %v %v", got, err)
	}
}

// A container recorded as running whose supervisor is gone has exited.
func TestState_DeadSupervisor(t *testing.T) {
	c := exec.Command("true")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	pid := c.Process.Pid
	start, err := layerstore.ProcessStart(pid)
	if err != nil {
		t.Fatal(err)
	}
	running := State{Status: Running, Pid: 42, Supervisor: pid, SupervisorStart: start}
	c.Wait()
	if got := running.Current(); got.Status != Exited || got.ExitCode != ExitUnknown || got.Pid != 0 {
		t.Errorf("dead supervisor: %+v", got)
	}
	self, _ := layerstore.ProcessStart(os.Getpid())
	alive := State{Status: Running, Pid: 42, Supervisor: os.Getpid(), SupervisorStart: self}
	if got := alive.Current(); got != alive {
		t.Errorf("live supervisor: %+v", got)
	}
	// The same pid, started at another time, is another process.
	reused := alive
	reused.SupervisorStart++
	if got := reused.Current(); got.Status != Exited {
		t.Errorf("reused pid: %+v", got)
	}
}

// A --rm container's record is not synced: a crash of the machine may
// leave it empty. Such a record reads as a container that exited with
// ExitUnknown, which cannot be started and which Remove removes, top layer
// and all.
func TestContainers_LostRecord(t *testing.T) {
	c, st := openContainers(t)
	ctx := context.Background()
	rec, err := c.Create(ctx, "demo", CreateOptions{Name: "torn", AutoRemove: true, Options: Options{Network: NetworkNone}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(c.records.Dir(rec.ID), recordFile), 0); err != nil {
		t.Fatal(err)
	}
	list, err := c.records.List()
	if err != nil || len(list) != 1 {
		t.Fatalf("List: %v, %v", list, err)
	}
	got := list[0]
	if !got.Lost || got.ID != rec.ID || got.MountID != rec.MountID || got.State.Status != Exited || got.State.ExitCode != ExitUnknown {
		t.Errorf("a torn record reads as %+v", got)
	}
	if g, err := c.records.Get(rec.ID[:12]); err != nil || g.ID != rec.ID {
		t.Errorf("Get by prefix: %v %v", g, err)
	}
	if _, err := c.Run(ctx, rec.ID, Stdio{}, nil); err == nil || !strings.Contains(err.Error(), "lost") {
		t.Errorf("Run of a lost container: %v", err)
	}
	if _, err := c.records.Update(rec.ID, func(*Record) error { return nil }); !errors.Is(err, layerstore.ErrCorrupt) {
		t.Errorf("Update of a lost record: %v", err)
	}
	if err := c.Remove(ctx, rec.ID, true, true); err != nil {
		t.Fatal(err)
	}
	if n := leases(t, st); n != 0 {
		t.Errorf("%d leases after rm", n)
	}
	if _, err := os.Stat(c.records.Dir(rec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("its directory is left: %v", err)
	}
}

// The supervisor records a container's exit and quits: a reader that read
// the record before the exit was recorded and looks at the supervisor after
// it quit must read the record again, not report a supervisor that died
// without recording one (ExitUnknown). The hook puts the supervisor's
// record-and-quit in that window, every time.
func TestRecords_ExitRecordedBetweenReadAndSupervisorCheck(t *testing.T) {
	r := openRecords(t)
	for _, how := range []string{"get", "list"} {
		t.Run(how, func(t *testing.T) {
			sup := exec.Command("sleep", "60")
			if err := sup.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sup.Process.Kill(); sup.Wait() })
			start, err := layerstore.ProcessStart(sup.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			rec := &Record{Name: "race-" + how, ImageRef: "demo", Created: time.Now(),
				State: State{Status: Running, Pid: 42, Supervisor: sup.Process.Pid, SupervisorStart: start}}
			if err := r.Create(rec); err != nil {
				t.Fatal(err)
			}
			raced := 0
			afterRead = func(id string) {
				if id != rec.ID || raced > 0 {
					return
				}
				raced++
				if _, err := r.Update(id, func(rec *Record) error {
					rec.State = State{Status: Exited, ExitCode: 7, FinishedAt: time.Now()}
					return nil
				}); err != nil {
					t.Error(err)
				}
				sup.Process.Kill()
				sup.Wait()
			}
			t.Cleanup(func() { afterRead = nil })
			var got *Record
			if how == "get" {
				got, err = r.Get(rec.Name)
			} else {
				var recs []*Record
				recs, err = r.List()
				for _, x := range recs {
					if x.ID == rec.ID {
						got = x
					}
				}
			}
			if err != nil || got == nil {
				t.Fatal(got, err)
			}
			if raced != 1 {
				t.Fatalf("the hook ran %d times", raced)
			}
			if got.State.Status != Exited || got.State.ExitCode != 7 {
				t.Errorf("the recorded exit was lost: %+v", got.State)
			}
		})
	}
}
