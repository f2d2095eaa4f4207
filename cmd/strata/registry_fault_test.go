package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-dev/strata/internal/registrytest"
	"github.com/strata-dev/strata/internal/storetest"
)

// pushDemo pushes the demo image from a new store to reg as name and
// returns its image ID, its largest layer blob and its smallest.
func pushDemo(t *testing.T, addr, name string) (id string, big, small digest.Digest) {
	t.Helper()
	src := storetest.Root(t)
	loadDemo(t, src)
	mustRun(t, src, "tag", "demo", addr+"/"+name)
	mustRun(t, src, "push", addr+"/"+name)
	repo, tag, _ := strings.Cut(name, ":")
	m := manifestOf(t, "http://"+addr, repo, tag)
	var size, least float64
	for _, l := range m["layers"].([]any) {
		l := l.(map[string]any)
		if s := l["size"].(float64); s > size {
			size, big = s, digest.Digest(l["digest"].(string))
		}
		if s := l["size"].(float64); least == 0 || s < least {
			least, small = s, digest.Digest(l["digest"].(string))
		}
	}
	return storeImageID(t, src, "demo"), big, small
}

// assertEmpty fails unless the store at root holds no image.
func assertEmpty(t *testing.T, root string) {
	t.Helper()
	if out := mustRun(t, root, "images", "-q"); out != "" {
		t.Errorf("a failed pull left images:\n%s", out)
	}
	storetest.CheckRoot(t, root)
}

// TestRegistry_PullFaults: what a broken registry, network or proxy does
// to a pull. Each failure names what was wrong and stores nothing.
func TestRegistry_PullFaults(t *testing.T) {
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	addr := strings.TrimPrefix(reg.URL(), "http://")
	id, big, small := pushDemo(t, addr, "demo:v1")

	pull := func(t *testing.T, p *registrytest.Proxy, root string) result {
		t.Helper()
		return runStrata(t, root, "", "pull", p.Addr+"/demo:v1")
	}
	t.Run("wrong digest", func(t *testing.T) {
		p := registrytest.StartProxy(t, reg.URL())
		p.Swap(small, big)
		root := storetest.Root(t)
		r := pull(t, p, root)
		if r.err == nil || !strings.Contains(r.stderr, "does not match its digest") || !strings.Contains(r.stderr, string(small)) {
			t.Errorf("pull of a blob with the wrong content: %v\n%s", r.err, r.stderr)
		}
		assertEmpty(t, root)
	})
	t.Run("corrupt blob", func(t *testing.T) {
		p := registrytest.StartProxy(t, reg.URL())
		p.Corrupt(big)
		root := storetest.Root(t)
		r := pull(t, p, root)
		if r.err == nil || !strings.Contains(r.stderr, string(big)) || !strings.Contains(r.stderr, "nothing stored") {
			t.Errorf("pull of a corrupted blob: %v\n%s", r.err, r.stderr)
		}
		assertEmpty(t, root)
	})
	t.Run("not found", func(t *testing.T) {
		p := registrytest.StartProxy(t, reg.URL())
		root := storetest.Root(t)
		r := runStrata(t, root, "", "pull", p.Addr+"/demo:nope")
		if r.err == nil || !strings.Contains(r.stderr, "manifest for "+p.Addr+"/demo:nope not found: manifest unknown") {
			t.Errorf("pull of a missing tag: %v\n%s", r.err, r.stderr)
		}
		assertEmpty(t, root)
	})
	t.Run("not JSON", func(t *testing.T) {
		p := registrytest.StartProxy(t, reg.URL())
		p.ServeManifest([]byte("<html>this is not a manifest</html>"))
		root := storetest.Root(t)
		r := pull(t, p, root)
		if r.err == nil || !strings.Contains(r.stderr, "not JSON") {
			t.Errorf("pull of a non-JSON manifest: %v\n%s", r.err, r.stderr)
		}
		assertEmpty(t, root)
	})
	t.Run("oversized manifest", func(t *testing.T) {
		p := registrytest.StartProxy(t, reg.URL())
		p.ServeManifest(append([]byte(`{"schemaVersion":2,"x":"`), append(bytes.Repeat([]byte("a"), 5<<20), `"}`...)...))
		root := storetest.Root(t)
		r := pull(t, p, root)
		if r.err == nil || !strings.Contains(r.stderr, "more than the 4 MiB a manifest may have") {
			t.Errorf("pull of a 5 MiB manifest: %v\n%s", r.err, r.stderr)
		}
		assertEmpty(t, root)
	})
	t.Run("redirect loop", func(t *testing.T) {
		p := registrytest.StartProxy(t, reg.URL())
		p.RedirectLoop(true)
		root := storetest.Root(t)
		r := pull(t, p, root)
		if r.err == nil || !strings.Contains(r.stderr, "stopped after 10 redirects") {
			t.Errorf("pull through a redirect loop: %v\n%s", r.err, r.stderr)
		}
		assertEmpty(t, root)
	})
	t.Run("connection cut, resumed with Range", func(t *testing.T) {
		p := registrytest.StartProxy(t, reg.URL())
		p.CutNextBlobAfter(100 << 10)
		root := storetest.Root(t)
		if r := pull(t, p, root); r.err != nil {
			t.Fatalf("pull over a cut connection: %v\n%s", r.err, r.stderr)
		}
		if p.RangeRequests.Load() == 0 {
			t.Error("the interrupted blob was not resumed with a Range request")
		}
		if got := storeImageID(t, root, p.Addr+"/demo:v1"); got != id {
			t.Errorf("pulled %s, want %s", got, id)
		}
	})
}

// TestRegistry_KilledMidPull kills the registry while a layer streams: the
// pull fails with a clear message and the store is as before but for the
// unfinished downloads check lists; restarted, the registry serves a
// second pull, which resumes them with Range requests: fewer blob bytes
// cross than the image has, and the image is the same. A registry
// restarted while the pull still retries is resumed into.
func TestRegistry_KilledMidPull(t *testing.T) {
	registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	id, _, _ := pushDemo(t, reg.Addr, "demo:v1")
	var blobs int64
	for _, l := range manifestOf(t, reg.URL(), "demo", "v1")["layers"].([]any) {
		blobs += int64(l.(map[string]any)["size"].(float64))
	}
	p := registrytest.StartProxy(t, reg.URL())
	root := storetest.Root(t)
	var once sync.Once
	p.OnBlobBytes(func(n int64) {
		if n > 256<<10 {
			once.Do(func() { reg.Kill(); p.Break(true) })
		}
	})
	r := runStrata(t, root, "", "pull", p.Addr+"/demo:v1")
	if r.err == nil || !strings.Contains(r.stderr, "Error: pull "+p.Addr+"/demo:v1: ") || !strings.Contains(r.stderr, "502") && !strings.Contains(r.stderr, "EOF") {
		t.Errorf("pull from a registry killed mid-pull: %v\n%s", r.err, r.stderr)
	}
	t.Logf("the pull from a killed registry said: %s", r.stderr)
	assertEmpty(t, root)
	if out := mustRun(t, root, "check"); !strings.Contains(out, "unfinished download: sha256:") || !strings.Contains(out, "0 problems, 0 pieces of garbage") {
		t.Errorf("check after a pull that broke off lists no unfinished download:\n%s", out)
	}

	p.Break(false)
	p.OnBlobBytes(nil)
	reg.Restart(t)
	before, ranges := p.BlobBytes.Load(), p.RangeRequests.Load()
	if r := runStrata(t, root, "", "pull", p.Addr+"/demo:v1"); r.err != nil {
		t.Fatalf("second pull: %v\n%s", r.err, r.stderr)
	}
	if got := storeImageID(t, root, p.Addr+"/demo:v1"); got != id {
		t.Errorf("pulled %s, want %s", got, id)
	}
	moved := p.BlobBytes.Load() - before
	t.Logf("the second pull moved %d blob bytes of the image's %d (layers), with %d Range requests", moved, blobs, p.RangeRequests.Load()-ranges)
	if p.RangeRequests.Load() == ranges {
		t.Error("the second pull did not resume with a Range request")
	}
	if moved >= blobs {
		t.Errorf("the second pull moved %d blob bytes, the image's layers are %d: nothing was resumed", moved, blobs)
	}
	if out := mustRun(t, root, "check"); strings.Contains(out, "unfinished download") {
		t.Errorf("a pull that succeeded left its downloads:\n%s", out)
	}

	// Killed and back within the retries: the same pull resumes.
	fresh := storetest.Root(t)
	var again sync.Once
	restarted := make(chan struct{})
	start := p.BlobBytes.Load()
	p.OnBlobBytes(func(n int64) {
		if n-start > 256<<10 {
			again.Do(func() {
				reg.Kill()
				p.Break(true)
				go func() {
					time.Sleep(150 * time.Millisecond)
					p.Break(false)
					reg.Restart(t)
					close(restarted)
				}()
			})
		}
	})
	ranges = p.RangeRequests.Load()
	if r := runStrata(t, fresh, "", "pull", p.Addr+"/demo:v1"); r.err != nil {
		t.Fatalf("pull across a registry restart: %v\n%s", r.err, r.stderr)
	}
	<-restarted
	if p.RangeRequests.Load() == ranges {
		t.Error("the pull across a restart did not resume with a Range request")
	}
	if got := storeImageID(t, fresh, p.Addr+"/demo:v1"); got != id {
		t.Errorf("pulled %s, want %s", got, id)
	}
}
