package session

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// The wait for a mount's server ends once its lease is gone, even when the
// server lives on and its top layer is still under mounts/ (its deletion
// failed): the unmount takes the directory, garbage now, itself.
func TestWaitServer_LeaseGone_DirLeft(t *testing.T) {
	st := storetest.Open(t)
	const id = "left-behind"
	if err := os.MkdirAll(filepath.Join(st.MountDir(id), "upper", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.MountDir(id), "upper", "sub", "f"), []byte("top layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	start, err := layerstore.ProcessStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A server that lives on: this process.
	rec := &layerstore.MountRecord{ID: id, PID: os.Getpid(), PIDStart: start}
	if !rec.Running() {
		t.Fatal("this process's record is not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := waitServer(ctx, st, rec); err != nil {
		t.Fatalf("wait for a server whose lease is gone: %v", err)
	}
	if _, err := os.Lstat(st.MountDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the mount's directory after the wait: %v, want it gone", err)
	}
}
