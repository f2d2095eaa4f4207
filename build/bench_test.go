package build

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-dev/strata/container"
	"github.com/strata-dev/strata/internal/runctest"
)

// benchDockerfile is bench/build-compare.sh's: ten steps on the fixture.
const benchDockerfile = `FROM demo:latest
ENV A=1
WORKDIR /bench
COPY a.txt /bench/a.txt
COPY f1.bin f2.bin f3.bin /bench/bin/
RUN echo step > /bench/step1
RUN ls -la /bench > /bench/listing
ADD a.txt /bench/added.txt
RUN cat /bench/a.txt /bench/added.txt > /bench/both
LABEL org.example.bench=build
CMD ["/bin/sh"]
`

// BenchmarkBuild builds benchDockerfile cold (--no-cache: three runc
// containers, five layers) and fully cached (the context checksummed, every
// step from the cache).
func BenchmarkBuild(b *testing.B) {
	st := openStore(b)
	files := map[string]string{"a.txt": "hi\n", "Dockerfile": benchDockerfile}
	dir := writeContext(b, files)
	for _, f := range []string{"f1.bin", "f2.bin", "f3.bin"} {
		data := make([]byte, 200000)
		for i := range data {
			data[i] = byte(i * 7)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	rt := &container.Runtime{Root: runctest.Root(b)}
	o := Options{Context: dir, Runtime: rt, Network: container.NetworkNone, Progress: io.Discard}
	if _, err := Build(context.Background(), st, o); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		noCache bool
	}{{"cold", true}, {"cached", false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			o := o
			o.NoCache = c.noCache
			for i := 0; i < b.N; i++ {
				if _, err := Build(context.Background(), st, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
