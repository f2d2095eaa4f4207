package main

import (
	"encoding/json"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// configEdit changes an image config as one Dockerfile instruction would.
type configEdit func(c *ocispec.ImageConfig) error

// parseChanges turns --change instructions into config edits.
func parseChanges(changes []string) ([]configEdit, error) {
	var out []configEdit
	for _, ch := range changes {
		e, err := parseChange(ch)
		if err != nil {
			return nil, fmt.Errorf("--change %q: %w", ch, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseChange(s string) (configEdit, error) {
	s = strings.TrimSpace(s)
	instr, rest, _ := strings.Cut(s, " ")
	rest = strings.TrimSpace(rest)
	if rest == "" {
		return nil, fmt.Errorf("%s needs an argument", instr)
	}
	switch strings.ToUpper(instr) {
	case "CMD":
		args := execForm(rest)
		return func(c *ocispec.ImageConfig) error { c.Cmd = args; return nil }, nil
	case "ENTRYPOINT":
		args := execForm(rest)
		return func(c *ocispec.ImageConfig) error { c.Entrypoint = args; return nil }, nil
	case "ENV":
		kvs, err := keyValues(rest)
		if err != nil {
			return nil, err
		}
		return func(c *ocispec.ImageConfig) error {
			for _, kv := range kvs {
				k, _, _ := strings.Cut(kv, "=")
				c.Env = setEnv(c.Env, k, kv)
			}
			return nil
		}, nil
	case "LABEL":
		kvs, err := keyValues(rest)
		if err != nil {
			return nil, err
		}
		return func(c *ocispec.ImageConfig) error {
			if c.Labels == nil {
				c.Labels = map[string]string{}
			}
			for _, kv := range kvs {
				k, v, _ := strings.Cut(kv, "=")
				c.Labels[k] = v
			}
			return nil
		}, nil
	case "EXPOSE":
		ports := strings.Fields(rest)
		return func(c *ocispec.ImageConfig) error {
			if c.ExposedPorts == nil {
				c.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range ports {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				c.ExposedPorts[p] = struct{}{}
			}
			return nil
		}, nil
	case "VOLUME":
		vols := execForm(rest)
		return func(c *ocispec.ImageConfig) error {
			if c.Volumes == nil {
				c.Volumes = map[string]struct{}{}
			}
			for _, v := range vols {
				c.Volumes[v] = struct{}{}
			}
			return nil
		}, nil
	case "USER":
		return func(c *ocispec.ImageConfig) error { c.User = rest; return nil }, nil
	case "WORKDIR":
		return func(c *ocispec.ImageConfig) error { c.WorkingDir = rest; return nil }, nil
	case "STOPSIGNAL":
		return func(c *ocispec.ImageConfig) error { c.StopSignal = rest; return nil }, nil
	}
	return nil, fmt.Errorf("unsupported instruction %q (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)", instr)
}

// execForm parses ["a","b"] or falls back to the shell form.
func execForm(s string) []string {
	var args []string
	if strings.HasPrefix(s, "[") && json.Unmarshal([]byte(s), &args) == nil {
		return args
	}
	if strings.HasPrefix(s, "/") && !strings.ContainsAny(s, " \t") {
		return []string{s}
	}
	return []string{"/bin/sh", "-c", s}
}

// keyValues parses "K=V K2=V2" (V may be quoted) or the legacy "K V".
func keyValues(s string) ([]string, error) {
	if !strings.Contains(strings.SplitN(s, " ", 2)[0], "=") {
		k, v, ok := strings.Cut(s, " ")
		if !ok {
			return nil, fmt.Errorf("%q: want KEY=VALUE", s)
		}
		return []string{k + "=" + strings.TrimSpace(v)}, nil
	}
	var out []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case quote == 0 && (c == ' ' || c == '\t'):
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%q: unterminated quote", s)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	for _, kv := range out {
		if !strings.Contains(kv, "=") || strings.HasPrefix(kv, "=") {
			return nil, fmt.Errorf("%q: want KEY=VALUE", kv)
		}
	}
	return out, nil
}

func setEnv(env []string, key, kv string) []string {
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}
