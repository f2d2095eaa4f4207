package build

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/internal/fixtures"
	"github.com/strata-dev/strata/internal/storetest"
)

// TestBuild_DebianAptGet installs a package with apt-get in RUN steps on
// the debootstrap image: apt-get update on the private network
// (slirp4netns), the install on the host's (RUN --network=host). It needs
// Debian's mirror; a machine that cannot reach it skips.
func TestBuild_DebianAptGet(t *testing.T) {
	st := openStore(t)
	c, err := net.DialTimeout("tcp", "deb.debian.org:80", 5*time.Second)
	if err != nil {
		t.Skipf("deb.debian.org unreachable from here: %v", err)
	}
	c.Close()
	storetest.Load(t, st, filepath.Join(fixtures.Debian(t), "debian.docker.tar"))
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM debian:bookworm
RUN apt-get update
RUN --network=host apt-get install -y --no-install-recommends hello && hello
`})
	img, out := build(t, st, Options{Context: dir, Network: container.NetworkPrivate})
	if !strings.Contains(out, "Hello, world!") {
		t.Errorf("hello did not run:\n%s", out)
	}
	if e, _ := readFile(t, st, img, "usr/bin/hello"); e.Mode&0o111 == 0 {
		t.Errorf("usr/bin/hello mode %o", e.Mode)
	}
}
