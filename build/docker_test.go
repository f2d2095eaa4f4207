package build

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/dockertest"
	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
	"github.com/strata-dev/strata/internal/treecmp"
)

// startDockerd starts a dockerd of the test's own (internal/dockertest:
// overlay2 storage, vfs where overlay2 cannot start; no iptables, no
// bridge), stopped when the test ends, and returns its socket; it skips
// when dockerd is not installed or cannot start here.
func startDockerd(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "build-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d, err := dockertest.Start(dir) // removes dir when it fails or closes
	if errors.Is(err, dockertest.ErrUnavailable) {
		t.Skipf("no comparison with docker build: %v", err)
	}
	if err != nil {
		t.Skipf("dockerd does not start here: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("stop dockerd: %v", err)
		}
	})
	return d.Sock
}

// sameAsDockerCases are Dockerfiles both builders take: docker's classic
// builder (Debian's docker CLI 20.10 has no buildx for BuildKit) has no
// heredocs, --chmod or zstd archives, so those are left to the other tests.
var sameAsDockerCases = []struct {
	name, dockerfile string
	debian           bool
	files            map[string]string
}{
	{name: "EveryInstruction", dockerfile: `ARG BASE=demo:latest
FROM ${BASE} AS builder
RUN mkdir -p /out && echo built > /out/artifact

FROM ${BASE}
ARG GREETING=hello
ENV APP=/srv/app NAME="strata build"
WORKDIR $APP
COPY hello.txt sub ./
COPY *.glob /globbed/
COPY --chown=1000:1000 hello.txt /owned/h.txt
COPY --from=builder /out/ /from-stage/
ADD archive.tar.gz /unpacked/gz/
ADD archive.tar.bz2 /unpacked/bz2/
ADD archive.tar.xz /unpacked/xz/
ADD {{URL}}/remote.txt /remote/
RUN echo "$GREETING from $NAME" > greeting && mkdir -p /var/made && rm -f /app/blob-copy.bin
RUN ["/bin/sh", "-c", "echo exec form > /srv/app/exec"]
LABEL org.example.k=v "org.example.space"="a b"
MAINTAINER Jane <jane@example.com>
EXPOSE 80 53/udp
VOLUME /data2
USER 1000:1000
SHELL ["/bin/sh", "-ec"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD test -f /srv/app/greeting
ONBUILD RUN echo triggered > /tmp/onbuild
ENTRYPOINT ["/bin/sh"]
CMD echo "$APP"
`},
	{name: "Debian", debian: true, dockerfile: `FROM debian:bookworm
RUN useradd -m -u 1234 app && mkdir -p /srv/app && chown app:app /srv/app
COPY --chown=app:app hello.txt sub /srv/app/
RUN mkdir /srv/app/data && chown app:app /srv/app/data
USER app
WORKDIR /srv/app/data
RUN echo "$(id -un):$(id -gn)" > whoami && ln -s whoami link
ENV LANG=C.UTF-8
CMD ["cat", "/srv/app/data/whoami"]
`},
}

// TestBuild_SameAsDocker builds each Dockerfile with strata and with
// dockerd from the same base archive, loads docker's result into the store
// (docker save), and compares the two images' trees (type, mode, owner,
// size, content, link target, xattrs) and config fields.
func TestBuild_SameAsDocker(t *testing.T) {
	st := openStore(t)
	sock := startDockerd(t)
	docker := func(t *testing.T, args ...string) string {
		t.Helper()
		c := exec.Command("docker", append([]string{"-H", "unix://" + sock}, args...)...)
		c.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		b, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("docker %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	docker(t, "load", "-i", filepath.Join(fixtures.Dir(t), "demo.docker.tar"))
	url := serve(t, map[string]string{"/remote.txt": "from the web\n"})
	for _, tc := range sameAsDockerCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.debian {
				deb := filepath.Join(fixtures.Debian(t), "debian.docker.tar")
				docker(t, "load", "-i", deb)
				storetest.Load(t, st, deb)
			}
			dir := everyContext(t)
			df := strings.ReplaceAll(tc.dockerfile, "{{URL}}", url)
			if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
				t.Fatal(err)
			}
			name := strings.ToLower(tc.name)
			img, _ := build(t, st, Options{Context: dir, Tags: []string{"strata-" + name + ":1"}})
			docker(t, "build", "--network", "none", "-t", "docker-"+name+":1", dir)
			archive := filepath.Join(t.TempDir(), "docker.tar")
			docker(t, "save", "-o", archive, "docker-"+name+":1")
			storetest.Load(t, st, archive)
			dimg, err := st.ResolveImage("docker-" + name + ":1")
			if err != nil {
				t.Fatal(err)
			}
			_, stree, _ := st.ImageTree(string(img.ID))
			_, dtree, _ := st.ImageTree(string(dimg.ID))
			diffs := treecmp.Compare(treecmp.FromLayerTree(dtree), treecmp.FromLayerTree(stree), treecmp.Options{IgnoreMtime: true, IgnoreInodes: true})
			for _, d := range diffs {
				t.Errorf("docker vs strata: %s", d)
			}
			a, b := dimg.Config.Config, img.Config.Config
			for _, f := range []struct {
				name string
				d, s any
			}{
				{"Env", a.Env, b.Env}, {"Cmd", a.Cmd, b.Cmd}, {"Entrypoint", a.Entrypoint, b.Entrypoint},
				{"WorkingDir", a.WorkingDir, b.WorkingDir}, {"User", a.User, b.User}, {"Labels", a.Labels, b.Labels},
				{"ExposedPorts", a.ExposedPorts, b.ExposedPorts}, {"Volumes", a.Volumes, b.Volumes}, {"StopSignal", a.StopSignal, b.StopSignal},
				{"Author", dimg.Config.Author, img.Config.Author}, {"layers", len(dimg.Layers), len(img.Layers)},
				{"Healthcheck", extra(t, dimg.ConfigRaw)["Healthcheck"], extra(t, img.ConfigRaw)["Healthcheck"]},
				{"OnBuild", extra(t, dimg.ConfigRaw)["OnBuild"], extra(t, img.ConfigRaw)["OnBuild"]},
				{"Shell", extra(t, dimg.ConfigRaw)["Shell"], extra(t, img.ConfigRaw)["Shell"]},
			} {
				if fmt.Sprint(f.d) != fmt.Sprint(f.s) {
					t.Errorf("%s: docker %v, strata %v", f.name, f.d, f.s)
				}
			}
			// The classic builder's created_by words differ from BuildKit's
			// (which strata writes); which entries carry a layer must not.
			var dl, sl []bool
			for _, h := range dimg.Config.History {
				dl = append(dl, h.EmptyLayer)
			}
			for _, h := range img.Config.History {
				sl = append(sl, h.EmptyLayer)
			}
			if fmt.Sprint(layered(dl)) != fmt.Sprint(layered(sl)) {
				t.Errorf("history layers: docker %v, strata %v", dl, sl)
			}
		})
	}
}

// layered counts the history entries with a layer.
func layered(empty []bool) int {
	n := 0
	for _, e := range empty {
		if !e {
			n++
		}
	}
	return n
}

// extra reads the config's "config" keys that ocispec lacks.
func extra(t *testing.T, raw []byte) map[string]string {
	var c struct {
		Config map[string]json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range c.Config {
		if string(v) != "null" { // docker writes "OnBuild": null, strata leaves it out
			out[k] = string(v)
		}
	}
	return out
}
