package container

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecOptions describe a process to run in a running container. Empty
// fields take the container's: its environment, working directory and user.
type ExecOptions struct {
	Cmd         []string
	Env         []string // KEY=VALUE, or KEY alone for HostEnv's value
	HostEnv     func(string) (string, bool)
	WorkingDir  string
	User        string
	Tty         bool
	Interactive bool
}

// Exec runs o.Cmd in the running container ref and returns its exit status:
// its own, 128+N after signal N, or ExitCannotInvoke when it cannot be run
// (as docker exec: also when it does not exist).
func (c *Containers) Exec(ref string, o ExecOptions, stdio Stdio) (int, error) {
	rec, err := c.records.Get(ref)
	if err != nil {
		return 1, err
	}
	if rec.State.Status != Running {
		return 1, fmt.Errorf("container %s is not running: %w", rec.ID, ErrNotRunning)
	}
	if len(o.Cmd) == 0 {
		return 1, fmt.Errorf("exec: %w", ErrNoCommand)
	}
	b, err := os.ReadFile(filepath.Join(c.bundle(rec.ID), "config.json"))
	if err != nil {
		return 1, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return 1, fmt.Errorf("container %s: bundle: %w", rec.ID, err)
	}
	p := *spec.Process
	p.Args, p.Terminal = o.Cmd, o.Tty
	if o.WorkingDir != "" {
		p.Cwd = o.WorkingDir
	}
	home := ""
	if o.User != "" {
		eu, err := execUser(c.rootfs(rec.ID), o.User)
		if err != nil {
			return 1, err
		}
		p.User = specUser(eu)
		home = eu.Home
	}
	// The container's environment, the user's HOME, then -e.
	env := Options{Env: o.Env, HostEnv: o.HostEnv, Tty: o.Tty}
	base := p.Env
	if home != "" {
		base = append(filterEnv(base, "HOME"), "HOME="+home)
	}
	if p.Env, err = mergeEnv(base, env, spec.Hostname, "/"); err != nil {
		return 1, err
	}
	dir, err := os.MkdirTemp(c.records.Dir(rec.ID), "exec-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	pb, err := json.Marshal(p)
	if err != nil {
		return 1, err
	}
	file := filepath.Join(dir, "process.json")
	if err := os.WriteFile(file, pb, 0o600); err != nil {
		return 1, err
	}
	if !o.Interactive {
		stdio.Stdin = nil
	}
	return c.runtime(rec).Exec(rec.ID, file, dir, stdio)
}

// filterEnv drops key from env.
func filterEnv(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if len(kv) > len(key) && kv[:len(key)+1] == key+"=" {
			continue
		}
		out = append(out, kv)
	}
	return out
}
