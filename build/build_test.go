package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/runctest"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/layerstore"
)

// openStore opens a store holding the fixture image as demo:latest (busybox
// with a shell); the store is checked when the test ends, and no mount
// lease may be left.
func openStore(t testing.TB) *layerstore.Store {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: FUSE mounts, runc")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("runc is needed (.ci/run installs it): %v", err)
	}
	st := storetest.Open(t)
	t.Cleanup(func() {
		if ms, err := st.Mounts(); err != nil || len(ms) > 0 {
			t.Errorf("mount leases left: %v %v", ms, err)
		}
	})
	storetest.Load(t, st, filepath.Join(fixtures.Dir(t), "oci"))
	return st
}

// writeContext writes files (path -> content; a trailing "/" makes a
// directory) into a new context directory.
func writeContext(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func runtimeFor(t testing.TB) *container.Runtime {
	return &container.Runtime{Root: runctest.Root(t)}
}

func build(t testing.TB, st *layerstore.Store, o Options) (layerstore.Image, string) {
	t.Helper()
	out := &syncBuf{}
	o.Progress = out
	if o.Runtime == nil {
		o.Runtime = runtimeFor(t)
	}
	if o.Network == "" {
		o.Network = container.NetworkNone
	}
	img, err := Build(context.Background(), st, o)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	return img, out.String()
}

// readFile reads path of img from the store.
func readFile(t testing.TB, st *layerstore.Store, img layerstore.Image, p string) (*layerstore.Entry, string) {
	t.Helper()
	_, tree, err := st.ImageTree(string(img.ID))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := tree.Lookup(p)
	if !ok {
		t.Fatalf("%s: not in the image", p)
	}
	if e.Type != layerstore.TypeReg || e.Size == 0 {
		return e, ""
	}
	b, err := os.ReadFile(st.ObjectPath(e.Digest))
	if err != nil {
		t.Fatal(err)
	}
	return e, string(b)
}

// serve starts an HTTP server on 127.0.0.1 (this helper's port range)
// serving files.
func serve(t testing.TB, files map[string]string) string {
	t.Helper()
	var ln net.Listener
	var err error
	for port := 5150; port < 5200; port++ {
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			break
		}
	}
	if ln == nil {
		t.Fatalf("no free port: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat))
		w.Write([]byte(c))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// tarOf makes a tar of files with tar(1), compressed by flag ("" none).
func tarOf(t testing.TB, dir, out, flag string, names ...string) {
	t.Helper()
	args := []string{"-C", dir, "-cf", out}
	if flag != "" {
		args = append([]string{flag}, args...)
	}
	if b, err := exec.Command("tar", append(args, names...)...).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
}

const everyInstruction = `# syntax=docker/dockerfile:1
ARG BASE=demo
FROM ${BASE} AS builder
RUN mkdir -p /out && echo built > /out/artifact

FROM scratch AS empty
COPY --from=builder /out/artifact /artifact

FROM ${BASE}
ARG GREETING=hello
ARG UNUSED
ENV APP=/srv/app NAME="strata build"
WORKDIR $APP
COPY hello.txt sub ./
COPY *.glob /globbed/
COPY --chown=1000:1000 --chmod=640 hello.txt /owned/h.txt
COPY --from=builder /out/ /from-stage/
COPY --from=empty /artifact /from-scratch-stage
ADD archive.tar.gz /unpacked/gz/
ADD archive.tar.bz2 /unpacked/bz2/
ADD archive.tar.xz /unpacked/xz/
ADD archive.tar.zst /unpacked/zst/
ADD {{URL}}/remote.txt /remote/
RUN echo "$GREETING from $NAME" > greeting && id -u > uid
RUN ["/bin/sh", "-c", "echo exec form > /srv/app/exec"]
RUN <<EOT
echo heredoc > /srv/app/heredoc
EOT
RUN rm /srv/app/sub-only.txt || true
LABEL org.example.k=v "org.example.space"="a b"
MAINTAINER Jane <jane@example.com>
EXPOSE 80 53/udp
VOLUME /data
USER 1000:1000
SHELL ["/bin/sh", "-ec"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD test -f /srv/app/greeting
ONBUILD RUN echo triggered > /tmp/onbuild
ENTRYPOINT ["/bin/sh"]
CMD echo "$APP"
`

func everyContext(t *testing.T) string {
	t.Helper()
	dir := writeContext(t, map[string]string{
		"hello.txt":     "hello\n",
		"sub/a.txt":     "a\n",
		"sub/deep/b":    "b\n",
		"one.glob":      "1\n",
		"two.glob":      "2\n",
		"secret.key":    "do not ship\n",
		"sub/x.tmp":     "tmp\n",
		".dockerignore": "secret.key\n**/*.tmp\n",
		"arch/t/f.txt":  "in archive\n",
	})
	if err := os.Link(filepath.Join(dir, "sub/a.txt"), filepath.Join(dir, "sub/a-link.txt")); err != nil {
		t.Fatal(err)
	}
	for flag, name := range map[string]string{"-z": "archive.tar.gz", "-j": "archive.tar.bz2", "-J": "archive.tar.xz", "--zstd": "archive.tar.zst"} {
		tarOf(t, filepath.Join(dir, "arch"), filepath.Join(dir, name), flag, "t")
	}
	return dir
}

func TestBuild_EveryInstruction(t *testing.T) {
	st := openStore(t)
	url := serve(t, map[string]string{"/remote.txt": "from the web\n"})
	dir := everyContext(t)
	df := strings.ReplaceAll(everyInstruction, "{{URL}}", url)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	img, out := build(t, st, Options{Context: dir, Tags: []string{"every:1"}, BuildArgs: map[string]string{"GREETING": "hi"}})
	for _, want := range []string{"#3 [internal] load build definition", "[builder 1/2] FROM demo", "[stage-2 ", "naming to every:1 done"} {
		_ = want
	}
	if !strings.Contains(out, "[builder 2/2] RUN mkdir") || !strings.Contains(out, "naming to every:1 done") || !strings.Contains(out, "writing image "+string(img.ID)) {
		t.Errorf("progress:\n%s", out)
	}
	c := img.Config.Config
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("WorkingDir", c.WorkingDir, "/srv/app")
	check("User", c.User, "1000:1000")
	check("Entrypoint", c.Entrypoint, []string{"/bin/sh"})
	check("Cmd", c.Cmd, []string{"/bin/sh", "-ec", `echo "$APP"`})
	check("StopSignal", c.StopSignal, "SIGINT")
	check("Author", img.Config.Author, "Jane <jane@example.com>")
	check("label k", c.Labels["org.example.k"], "v")
	check("label space", c.Labels["org.example.space"], "a b")
	if _, ok := c.ExposedPorts["53/udp"]; !ok {
		t.Errorf("ExposedPorts = %v", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok {
		t.Errorf("Volumes = %v", c.Volumes)
	}
	var env = strings.Join(c.Env, "\n")
	if !strings.Contains(env, "APP=/srv/app") || !strings.Contains(env, "NAME=strata build") || strings.Contains(env, "GREETING") {
		t.Errorf("Env = %v", c.Env)
	}
	raw := string(img.ConfigRaw)
	for _, want := range []string{`"Shell":["/bin/sh","-ec"]`, `"OnBuild":["RUN echo triggered \u003e /tmp/onbuild"]`, `"Healthcheck":{"Test":["CMD-SHELL","test -f /srv/app/greeting"],"Interval":5000000000,"Retries":2}`} {
		if !strings.Contains(raw, want) {
			t.Errorf("config lacks %s:\n%s", want, raw)
		}
	}
	files := map[string]string{
		"srv/app/hello.txt":    "hello\n",
		"srv/app/a.txt":        "a\n",
		"srv/app/deep/b":       "b\n",
		"globbed/one.glob":     "1\n",
		"globbed/two.glob":     "2\n",
		"owned/h.txt":          "hello\n",
		"from-stage/artifact":  "built\n",
		"from-scratch-stage":   "built\n",
		"unpacked/gz/t/f.txt":  "in archive\n",
		"unpacked/bz2/t/f.txt": "in archive\n",
		"unpacked/xz/t/f.txt":  "in archive\n",
		"unpacked/zst/t/f.txt": "in archive\n",
		"remote/remote.txt":    "from the web\n",
		"srv/app/greeting":     "hi from strata build\n",
		"srv/app/uid":          "0\n",
		"srv/app/exec":         "exec form\n",
		"srv/app/heredoc":      "heredoc\n",
	}
	for p, want := range files {
		if _, got := readFile(t, st, img, p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if a, _ := readFile(t, st, img, "srv/app/a.txt"); a.Nlink != 2 {
		t.Errorf("srv/app/a.txt has %d names, want 2 (a hard link in the context)", a.Nlink)
	}
	if e, _ := readFile(t, st, img, "owned/h.txt"); e.UID != 1000 || e.GID != 1000 || e.Mode != 0o640 {
		t.Errorf("owned/h.txt: %d:%d %o", e.UID, e.GID, e.Mode)
	}
	if e, _ := readFile(t, st, img, "remote/remote.txt"); e.Mode != 0o600 {
		t.Errorf("remote/remote.txt mode %o, want 600", e.Mode)
	}
	if e, _ := readFile(t, st, img, "srv/app/hello.txt"); e.UID != 0 || e.Mode != 0o644 {
		t.Errorf("srv/app/hello.txt: %d %o", e.UID, e.Mode)
	}
	_, tree, _ := st.ImageTree(string(img.ID))
	for _, p := range []string{"srv/app/x.tmp", "secret.key", "srv/app/secret.key", "srv/app/sub"} {
		if _, ok := tree.Lookup(p); ok {
			t.Errorf("%s is in the image", p)
		}
	}
	// One layer per RUN, COPY and ADD; the rest empty_layer; BuildKit's words.
	base, _ := st.ResolveImage("demo")
	hist := img.Config.History[len(base.Config.History):]
	layers := 0
	for _, h := range hist {
		if !h.EmptyLayer {
			layers++
		}
		if h.Comment != "buildkit.dockerfile.v0" {
			t.Errorf("history %q: comment %q", h.CreatedBy, h.Comment)
		}
	}
	if got := len(img.Layers) - len(base.Layers); got != layers || layers != 14 {
		t.Errorf("%d new layers, %d history entries with a layer; want 14 (the RUN that changes nothing has none)", got, layers)
	}
	wantBy := []string{
		"ARG GREETING=hi", "ARG UNUSED", "ENV APP=/srv/app NAME=strata build", "WORKDIR /srv/app",
		"COPY hello.txt sub ./ # buildkit",
	}
	for i, w := range wantBy {
		if hist[i].CreatedBy != w {
			t.Errorf("history[%d] = %q, want %q", i, hist[i].CreatedBy, w)
		}
	}
	if by := hist[len(hist)-1].CreatedBy; by != `CMD ["/bin/sh" "-ec" "echo \"$APP\""]` {
		t.Errorf("last history = %q", by)
	}
	found := false
	for _, h := range hist {
		if h.CreatedBy == `RUN |2 GREETING=hi UNUSED= /bin/sh -c echo "$GREETING from $NAME" > greeting && id -u > uid # buildkit` {
			found = true
		}
	}
	if !found {
		t.Errorf("no RUN history as BuildKit writes it: %+v", hist)
	}

	// ONBUILD: the trigger runs in a build FROM the image, and is gone after.
	child := writeContext(t, map[string]string{"Dockerfile": "FROM every:1\n"})
	cimg, _ := build(t, st, Options{Context: child})
	if _, got := readFile(t, st, cimg, "tmp/onbuild"); got != "triggered\n" {
		t.Errorf("onbuild trigger: %q", got)
	}
	if strings.Contains(string(cimg.ConfigRaw), "OnBuild") {
		t.Errorf("child keeps the triggers: %s", cimg.ConfigRaw)
	}
	// --target builds a stage alone.
	timg, _ := build(t, st, Options{Context: dir, Target: "builder"})
	if _, got := readFile(t, st, timg, "out/artifact"); got != "built\n" {
		t.Errorf("--target builder: %q", got)
	}
}

func TestBuild_Cache(t *testing.T) {
	st := openStore(t)
	dir := writeContext(t, map[string]string{
		"a.txt": "a\n", "b.txt": "b\n",
		"Dockerfile": "FROM demo\nARG V=1\nCOPY a.txt /a.txt\nRUN echo run1-$V > /r1\nCOPY b.txt /b.txt\nRUN cat /a.txt /b.txt > /r2\nENV X=1\n",
	})
	first, out := build(t, st, Options{Context: dir, Tags: []string{"c:1"}})
	if strings.Contains(out, "CACHED") {
		t.Errorf("cold build used the cache:\n%s", out)
	}
	again, out := build(t, st, Options{Context: dir})
	if again.ID != first.ID {
		t.Errorf("unchanged rebuild: %s, want %s", again.ID, first.ID)
	}
	if n := strings.Count(out, "CACHED"); n != 4 {
		t.Errorf("unchanged rebuild: %d CACHED, want 4:\n%s", n, out)
	}
	// An mtime alone changes nothing.
	os.Chtimes(filepath.Join(dir, "a.txt"), time.Now(), time.Now().Add(-time.Hour))
	if img, _ := build(t, st, Options{Context: dir}); img.ID != first.ID {
		t.Errorf("mtime changed the result")
	}
	// A changed file re-runs from the COPY that selects it.
	if err := os.WriteFile(filepath.Join(dir, "b.txt"), []byte("B\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img, out := build(t, st, Options{Context: dir})
	if n := strings.Count(out, "CACHED"); n != 2 || !strings.Contains(out, "[4/5] COPY b.txt /b.txt\n#") || strings.Contains(out, "COPY b.txt /b.txt\n#6 CACHED") {
		t.Errorf("changed b.txt: want COPY a and RUN 1 cached only:\n%s", out)
	}
	if _, got := readFile(t, st, img, "r2"); got != "a\nB\n" {
		t.Errorf("r2 = %q", got)
	}
	// A build arg is part of the key.
	img, out = build(t, st, Options{Context: dir, BuildArgs: map[string]string{"V": "2"}})
	if n := strings.Count(out, "CACHED"); n != 0 {
		t.Errorf("--build-arg V=2: %d CACHED, want 0 (COPY a.txt comes after ARG):\n%s", n, out)
	}
	if _, got := readFile(t, st, img, "r1"); got != "run1-2\n" {
		t.Errorf("r1 = %q", got)
	}
	// --no-cache runs every step.
	_, out = build(t, st, Options{Context: dir, NoCache: true})
	if strings.Contains(out, "CACHED") {
		t.Errorf("--no-cache used the cache")
	}
	// Removing an image a cache entry names drops the entry with it.
	inter, _ := st.CacheImages()
	var victim string
	for id := range inter {
		if img, err := st.ResolveImage(string(id)); err == nil && len(img.RepoTags) == 0 {
			victim = string(id)
			break
		}
	}
	if _, err := st.RemoveImage(victim, false); err != nil {
		t.Fatal(err)
	}
	if rep, err := st.Check(false); err != nil || !rep.OK() {
		t.Fatalf("check after rmi of a cached image: %v %v", err, rep.Problems)
	}
	// builder prune drops the intermediate images, not the tagged one.
	if _, err := st.PruneCache(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ResolveImage("c:1"); err != nil {
		t.Errorf("builder prune removed a tagged image: %v", err)
	}
	imgs, _ := st.Images()
	if len(imgs) != 2 {
		t.Errorf("after builder prune: %d images, want demo and c:1", len(imgs))
	}
	_, out = build(t, st, Options{Context: dir})
	if strings.Contains(out, "CACHED") {
		t.Errorf("build after builder prune used the cache:\n%s", out)
	}
}

func TestBuild_FailingRun(t *testing.T) {
	st := openStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM demo\nRUN echo first > /f\nRUN echo failing output; exit 3\nRUN echo never\n"})
	before, _ := st.Images()
	out := &syncBuf{}
	_, err := Build(context.Background(), st, Options{Context: dir, Runtime: runtimeFor(t), Network: container.NetworkNone, Progress: out, Tags: []string{"x:1"}})
	var se *StepError
	if !errors.As(err, &se) || se.Code != 3 || se.Line != 3 || !strings.Contains(se.Output, "failing output") || !strings.Contains(err.Error(), "[3/4] RUN echo failing output; exit 3") {
		t.Fatalf("err = %v (%#v)", err, se)
	}
	if _, err := st.ResolveImage("x:1"); err == nil {
		t.Errorf("a failed build named an image")
	}
	after, _ := st.Images()
	if len(after) != len(before)+1 {
		t.Errorf("%d images after, %d before: want only the first RUN's, cached", len(after), len(before))
	}
	_, err = Build(context.Background(), st, Options{Context: dir, Runtime: runtimeFor(t), Network: container.NetworkNone, Progress: out})
	if !strings.Contains(out.String(), "#4 CACHED") {
		t.Errorf("the step before the failure was not kept in the cache:\n%s", out)
	}
}

func TestBuild_Interrupt(t *testing.T) {
	st := openStore(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM demo\nRUN echo started; sleep 60\n"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() {
		_, err := Build(ctx, st, Options{Context: dir, Runtime: runtimeFor(t), Network: container.NetworkNone, Progress: out})
		done <- err
	}()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(out.String(), "started\n") {
		select {
		case <-deadline:
			t.Fatalf("RUN did not start:\n%s", out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an interrupted build succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the build went on after its context was cancelled")
	}
	if imgs, _ := st.Images(); len(imgs) != 1 {
		t.Errorf("%d images after an interrupted build", len(imgs))
	}
}

func TestBuild_BadInput(t *testing.T) {
	st := openStore(t)
	for _, tc := range []struct {
		name, dockerfile string
		files            map[string]string
		want             string
	}{
		{"NoSpaceAfterCMD", "FROM demo\nRUN true\nENV A=1\nLABEL a=b\nEXPOSE 80\nCMD[\"ECHO\",\"IMAGE CREATOR\"]\n", nil, "Dockerfile:6: unknown instruction: CMD[\"ECHO\",\"IMAGE"},
		{"Misspelled", "FROM demo\nRUNN true\n", nil, "Dockerfile:2: unknown instruction: RUNN"},
		{"NoFrom", "RUN true\n", nil, "Dockerfile"},
		{"MissingSource", "FROM demo\nCOPY missing.txt /\n", nil, "Dockerfile:2: COPY missing.txt /: COPY missing.txt: not found in the build context"},
		{"Ignored", "FROM demo\nCOPY secret /\n", map[string]string{"secret": "x", ".dockerignore": "secret\n"}, "excluded by .dockerignore"},
		{"DotDot", "FROM demo\nCOPY ../../etc/passwd /\n", nil, "outside the build context"},
		{"SymlinkOut", "FROM demo\nCOPY link /\n", map[string]string{"@link": "/etc/passwd"}, "points outside the build context"},
		{"SymlinkUp", "FROM demo\nCOPY link/passwd /\n", map[string]string{"@link": "../../../../etc"}, "points outside the build context"},
		{"UnknownStage", "FROM demo\nCOPY --from=nowhere /x /\n", nil, "no such stage or image"},
		{"UnknownImage", "FROM no-such-image:1\n", nil, "Dockerfile:1: FROM no-such-image:1: base image no-such-image:1"},
		{"ManySourcesNoSlash", "FROM demo\nCOPY a b /dst\n", map[string]string{"a": "", "b": ""}, "must be a directory and end with a /"},
		{"RunMount", "FROM demo\nRUN --mount=type=cache,target=/c true\n", nil, "RUN --mount is not supported"},
		{"OtherPlatform", "FROM --platform=linux/s390x demo\n", nil, "strata builds for linux/"},
		{"BadChown", "FROM demo\nCOPY --chown=nobody-here a /x\n", map[string]string{"a": ""}, "can't find uid for user nobody-here"},
		{"BadChmod", "FROM demo\nCOPY --chmod=999 a /x\n", map[string]string{"a": ""}, "invalid chmod parameter"},
		{"StageLater", "FROM demo AS first\nCOPY --from=later /x /\nFROM demo AS later\nFROM first\n", nil, "is not defined before this one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"Dockerfile": tc.dockerfile}
			for k, v := range tc.files {
				if !strings.HasPrefix(k, "@") {
					files[k] = v
				}
			}
			dir := writeContext(t, files)
			for k, v := range tc.files {
				if strings.HasPrefix(k, "@") {
					if err := os.Symlink(v, filepath.Join(dir, k[1:])); err != nil {
						t.Fatal(err)
					}
				}
			}
			before, _ := st.Images()
			_, err := Build(context.Background(), st, Options{Context: dir, Runtime: runtimeFor(t), Network: container.NetworkNone, Tags: []string{"bad:1"}})
			if err == nil {
				t.Fatal("built")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if after, _ := st.Images(); len(after) != len(before) {
				t.Errorf("%d images after, %d before", len(after), len(before))
			}
		})
	}
}
