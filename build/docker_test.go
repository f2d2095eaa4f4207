package build

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/treecmp"
)

// startDockerd starts a dockerd of the test's own (vfs storage, no
// iptables, no bridge) and returns its socket; it skips when dockerd is
// not installed or cannot start here.
func startDockerd(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Skip("dockerd not installed: no comparison with docker build")
	}
	d, err := os.MkdirTemp("", "build-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(d, "sock")
	cmd := exec.Command("dockerd", "--data-root", filepath.Join(d, "data"), "--exec-root", filepath.Join(d, "exec"),
		"--pidfile", filepath.Join(d, "pid"), "-H", "unix://"+sock, "--iptables=false", "--bridge=none", "--storage-driver=vfs")
	logf, _ := os.Create(filepath.Join(d, "log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Skipf("dockerd cannot start: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		logf.Close()
		exec.Command("umount", "-R", filepath.Join(d, "data")).Run()
		os.RemoveAll(d)
	})
	for i := 0; i < 100; i++ {
		if exec.Command("docker", "-H", "unix://"+sock, "info").Run() == nil {
			return sock
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(d, "log"))
	t.Skipf("dockerd did not come up: %s", b)
	return ""
}

// TestBuild_SameAsDocker builds one Dockerfile with strata and with
// dockerd (its classic builder: Debian's docker CLI 20.10 has no buildx)
// from the same base archive, loads docker's result into the store, and
// compares the two images' trees and config fields.
func TestBuild_SameAsDocker(t *testing.T) {
	st := openStore(t)
	sock := startDockerd(t)
	docker := func(args ...string) string {
		t.Helper()
		c := exec.Command("docker", append([]string{"-H", "unix://" + sock}, args...)...)
		c.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		b, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("docker %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	docker("load", "-i", filepath.Join(fixtures.Dir(t), "demo.docker.tar"))
	dir := writeContext(t, map[string]string{
		"hello.txt": "hello\n", "sub/a.txt": "a\n", "sub/deep/b": "b\n", "one.glob": "1\n", "two.glob": "2\n",
		"Dockerfile": `FROM demo:latest
ENV APP=/srv/app
WORKDIR $APP
COPY hello.txt sub ./
COPY *.glob /globbed/
COPY --chown=1000:1000 hello.txt /owned/h.txt
RUN echo run > /srv/app/run && mkdir -p /var/made && rm -f /app/blob-copy.bin
LABEL org.example.k=v
EXPOSE 80 53/udp
VOLUME /data2
USER 1000
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi"]
`,
	})
	img, _ := build(t, st, Options{Context: dir, Tags: []string{"strata-built:1"}})
	docker("build", "--network", "none", "-t", "docker-built:1", dir)
	archive := filepath.Join(t.TempDir(), "docker-built.tar")
	docker("save", "-o", archive, "docker-built:1")
	addArchive(t, st, archive, "docker-built:1")
	dimg, err := st.ResolveImage("docker-built:1")
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
		{"layers", len(dimg.Layers), len(img.Layers)},
	} {
		if fmt.Sprint(f.d) != fmt.Sprint(f.s) {
			t.Errorf("%s: docker %v, strata %v", f.name, f.d, f.s)
		}
	}
	// The classic builder's history words differ from BuildKit's (which
	// strata writes); both say which instruction made each entry.
	dh, sh := dimg.Config.History, img.Config.History
	if len(dh) != len(sh) {
		t.Errorf("history: docker %d entries, strata %d", len(dh), len(sh))
	}
	for i := range min(len(dh), len(sh)) {
		if dh[i].EmptyLayer != sh[i].EmptyLayer {
			t.Errorf("history[%d] empty_layer: docker %v (%s), strata %v (%s)", i, dh[i].EmptyLayer, dh[i].CreatedBy, sh[i].EmptyLayer, sh[i].CreatedBy)
		}
	}
}
