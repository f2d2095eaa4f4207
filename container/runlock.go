package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// runLockFile is the lock file in a container's directory. A run (the
// container's supervisor) holds it, exclusively, from before its root is
// mounted until everything is let go, and rm holds it from before the
// runtime's delete until the record is gone: an rm racing a start either
// finds the start (and fails, or kills it when forced) or comes before it
// (and the start finds no container), never tears down a start half-way.
// A flock: a supervisor's death lets go of it.
const runLockFile = "run.lock"

// tryRunLock takes container id's run lock if no one holds it. ok is false
// when someone does; unlock is nil when the container's directory is gone
// (removed meanwhile).
func (c *Containers) tryRunLock(id string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(filepath.Join(c.records.Dir(id), runLockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, &os.PathError{Op: "flock", Path: f.Name(), Err: err}
	}
	return func() { f.Close() }, true, nil
}

// removeLock takes rec's run lock for rm. Without force a run that holds
// it (one starting: the record may still say created) fails rm with
// ErrRunning; with force the run is killed once its record says running,
// and rm waits for it to let go, for at most stuckAfter.
func (c *Containers) removeLock(ctx context.Context, rec *Record, force bool) (func(), error) {
	wctx, cancel := context.WithTimeout(ctx, max(c.stuckAfter, 10*time.Second))
	defer cancel()
	killed := false
	for {
		unlock, ok, err := c.tryRunLock(rec.ID)
		if err != nil || ok {
			if unlock == nil {
				unlock = func() {}
			}
			return unlock, err
		}
		if !force {
			return nil, fmt.Errorf("you cannot remove container %s while it is being started. Stop the container before attempting removal or force remove: %w", rec.ID, ErrRunning)
		}
		if cur, err := c.records.Get(rec.ID); err == nil && cur.State.Status == Running && !killed {
			if _, err := c.kill(wctx, cur); err != nil {
				return nil, err
			}
			killed = true
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("container %s: its supervisor holds it still: %w", rec.ID[:12], errors.Join(ErrRunning, wctx.Err()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}
