package main

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/storetest"
)

func TestInspect_Document(t *testing.T) {
	t.Parallel()
	root := storetest.Root(t)
	loadDemo(t, root)
	cfg := readDemoConfig(t)
	out := mustRun(t, root, "image", "inspect", "demo")

	t.Run("shape", func(t *testing.T) {
		if same := mustRun(t, root, "inspect", "demo"); same != out {
			t.Errorf("inspect differs from image inspect")
		}
		if !strings.HasPrefix(out, "[\n    {\n        \"Id\": ") || !strings.HasSuffix(out, "\n    }\n]\n") {
			t.Errorf("not docker's 4-space indented array:\n%s", out)
		}
		// docker's keys, in docker's order.
		var keys []string
		for _, m := range regexp.MustCompile(`(?m)^        "(\w+)":`).FindAllStringSubmatch(out, -1) {
			keys = append(keys, m[1])
		}
		want := []string{"Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container", "ContainerConfig", "DockerVersion", "Author",
			"Config", "Architecture", "Os", "Size", "VirtualSize", "GraphDriver", "RootFS", "Metadata"}
		if !slices.Equal(keys, want) {
			t.Errorf("keys %q\nwant %q", keys, want)
		}
		var configKeys []string
		for _, m := range regexp.MustCompile(`(?m)^            "(\w+)":`).FindAllStringSubmatch(out, -1) {
			configKeys = append(configKeys, m[1])
		}
		for _, k := range []string{"Hostname", "Domainname", "User", "AttachStdin", "Env", "Cmd", "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels"} {
			if !slices.Contains(configKeys, k) {
				t.Errorf("Config has no %s: %q", k, configKeys)
			}
		}
	})

	t.Run("values", func(t *testing.T) {
		doc := inspectDoc(t, root, "demo")
		if doc["Id"] != cfg.id {
			t.Errorf("Id %v, want the config's digest %s", doc["Id"], cfg.id)
		}
		if tags, _ := json.Marshal(doc["RepoTags"]); string(tags) != `["demo:latest"]` {
			t.Errorf("RepoTags %s", tags)
		}
		rootfs, _ := doc["RootFS"].(map[string]any)
		var layers []string
		for _, l := range rootfs["Layers"].([]any) {
			layers = append(layers, l.(string))
		}
		if rootfs["Type"] != "layers" || !slices.Equal(layers, cfg.DiffIDs) {
			t.Errorf("RootFS %v, want the config's diff_ids %q", rootfs, cfg.DiffIDs)
		}
		gd, _ := doc["GraphDriver"].(map[string]any)
		data, _ := gd["Data"].(map[string]any)
		if gd["Name"] != "strata" || !strings.HasPrefix(data["ChainID"].(string), "sha256:") {
			t.Errorf("GraphDriver %v", gd)
		}
		config, _ := doc["Config"].(map[string]any)
		labels, _ := config["Labels"].(map[string]any)
		for k, v := range cfg.Labels {
			if labels[k] != v {
				t.Errorf("label %s = %v, want %s", k, labels[k], v)
			}
		}
		if md, _ := doc["Metadata"].(map[string]any); md["LastTagTime"] != "0001-01-01T00:00:00Z" {
			t.Errorf("Metadata %v", md)
		}
		if doc["Parent"] != "" || doc["DockerVersion"] != "" {
			t.Errorf("Parent %v, DockerVersion %v: want empty", doc["Parent"], doc["DockerVersion"])
		}
		if size, _ := doc["Size"].(float64); int64(size) != demoSize(t, root) || size <= 0 {
			t.Errorf("Size %v", doc["Size"])
		}
	})

	tests := []struct {
		name   string
		args   []string
		stdout string
		stderr string
		code   int
	}{
		{name: "format id", args: []string{"-f", "{{.Id}}", "demo"}, stdout: cfg.id + "\n"},
		{name: "format json", args: []string{"--format", "{{json .RepoTags}}", "demo"}, stdout: `["demo:latest"]` + "\n"},
		{name: "format nested", args: []string{"-f", "{{.RootFS.Type}} {{len .RootFS.Layers}} {{.Os}}", "demo"}, stdout: "layers 5 linux\n"},
		{name: "by ID prefix", args: []string{"-f", "{{.Id}}", cfg.shortID()[:6]}, stdout: cfg.id + "\n"},
		{name: "by full ID", args: []string{"-f", "{{.Id}}", cfg.id}, stdout: cfg.id + "\n"},
		{name: "by docker.io name", args: []string{"-f", "{{.Id}}", "docker.io/library/demo:latest"}, stdout: cfg.id + "\n"},
		{name: "twice", args: []string{"-f", "{{.Id}}", "demo", "demo:latest"}, stdout: cfg.id + "\n" + cfg.id + "\n"},
		{name: "unknown", args: []string{"nosuch"}, stdout: "[]\n", stderr: "Error: No such image: nosuch:latest\n", code: 1},
		{name: "unknowns", args: []string{"a1", "b2"}, stdout: "[]\n", stderr: "Error: No such image: a1:latest\nError: No such image: b2:latest\n", code: 1},
		{name: "known and unknown", args: []string{"-f", "{{.Id}}", "nosuch", "demo"}, stdout: cfg.id + "\n", stderr: "Error: No such image: nosuch:latest\n", code: 1},
		{name: "bad field", args: []string{"-f", "{{.Nope}}", "demo"}, code: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runStrata(t, root, "", append([]string{"image", "inspect"}, tt.args...)...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d (%v)", r.code, tt.code, r.err)
			}
			if tt.name == "bad field" {
				if !strings.HasPrefix(r.stderr, `Error: executing the --format template "{{.Nope}}": no field "Nope" (there are .Id, .RepoTags,`) {
					t.Errorf("stderr %q", r.stderr)
				}
				return
			}
			if r.stdout != tt.stdout || r.stderr != tt.stderr {
				t.Errorf("stdout %q, stderr %q\nwant   %q, %q", r.stdout, r.stderr, tt.stdout, tt.stderr)
			}
		})
	}

	t.Run("known and unknown json", func(t *testing.T) {
		r := runStrata(t, root, "", "inspect", "demo", "nosuch")
		var docs []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &docs); err != nil || len(docs) != 1 || docs[0]["Id"] != cfg.id {
			t.Errorf("stdout: %v, %d documents", err, len(docs))
		}
		if r.code != 1 || r.stderr != "Error: No such object: nosuch\n" {
			t.Errorf("code %d, stderr %q", r.code, r.stderr)
		}
	})
}
