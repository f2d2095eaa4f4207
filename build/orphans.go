package build

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// owner is a RUN step's work directory's owner file: who runs the step,
// so that a later build can clean up after one that was killed.
type owner struct {
	PID      int    `json:"pid"`
	Start    uint64 `json:"start"` // the process's start time: a reused pid is not it
	ID       string `json:"id"`    // the container
	RuncRoot string `json:"runcRoot"`
	Store    string `json:"store"`
}

const ownerFile = "owner"

func writeOwner(work, id string, rt *container.Runtime, st *layerstore.Store) error {
	start, err := layerstore.ProcessStart(os.Getpid())
	if err != nil {
		return err
	}
	b, err := json.Marshal(owner{PID: os.Getpid(), Start: start, ID: id, RuncRoot: rt.Root, Store: st.Root()})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(work, ownerFile), b, 0o600)
}

// ours reports whether p is this user's, no symlink, and writable by
// nobody else: an owner file names a container to delete and a runc root,
// so one another user planted must not be obeyed.
func ours(p string) bool {
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSymlink != 0 || fi.Mode().Perm()&0o022 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// reapOrphans cleans up after the RUN steps of killed builds of this
// store: their containers (killed and deleted), their mounts (session.Reap:
// detached, top layer and lease gone) and their work directories. A step
// whose build still runs, or of another store, is left alone.
func reapOrphans(st *layerstore.Store) {
	files, _ := filepath.Glob(filepath.Join(os.TempDir(), "strata-build-*", ownerFile))
	for _, f := range files {
		if !ours(filepath.Dir(f)) || !ours(f) {
			continue // anyone can write under /tmp: act only on what this user made, private
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var o owner
		if json.Unmarshal(b, &o) != nil || o.Store != st.Root() {
			continue
		}
		if start, err := layerstore.ProcessStart(o.PID); err == nil && start == o.Start {
			continue // its build runs
		}
		(&container.Runtime{Root: o.RuncRoot}).ForceDelete(o.ID)
		dir := filepath.Dir(f)
		root := filepath.Join(dir, "root")
		ms, err := st.Mounts() // by lease, not by path: a dead mountpoint cannot be stat'ed
		if err != nil {
			continue
		}
		for _, m := range ms {
			if m.Dir == root {
				if err := session.Reap(st, m.ID); err != nil {
					continue
				}
			}
		}
		if mi, err := session.ReadMountinfo(); err != nil {
			continue
		} else if _, mounted := session.Mounted(mi, root); mounted {
			continue
		}
		os.RemoveAll(dir)
	}
}
