package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseVolume(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Volume
		err  string
	}{
		{"/host:/ctr", Volume{Type: "bind", Source: "/host", Destination: "/ctr"}, ""},
		{"/host:/ctr/:ro", Volume{Type: "bind", Source: "/host", Destination: "/ctr", ReadOnly: true}, ""},
		{"data:/ctr:rw", Volume{Type: "volume", Name: "data", Destination: "/ctr"}, ""},
		{"/ctr", Volume{Type: "volume", Destination: "/ctr", Anonymous: true}, ""},
		{"/host:rel", Volume{}, "mount path must be absolute"},
		{"/host:/", Volume{}, "cannot be a mount point"},
		{"/host:/ctr:rx", Volume{}, "invalid mode"},
		{"a:/ctr", Volume{}, "invalid characters"},
		{"bad name:/ctr", Volume{}, "invalid characters"},
		{"a:b:c:d", Volume{}, "too many colons"},
		{":/ctr", Volume{}, "no source"},
	} {
		got, err := ParseVolume(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error saying %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
	if v, err := ParseVolume("./rel:/ctr"); err != nil || v.Type != "bind" || !filepath.IsAbs(v.Source) {
		t.Errorf("relative bind: %+v %v", v, err)
	}
}

// Volumes: a bind, a named volume that starts with the image's content and
// outlives its containers, the image's VOLUME as an anonymous volume that
// rm -v removes.
func TestContainers_Volumes(t *testing.T) {
	c, _ := openContainers(t)
	ctx := context.Background()
	host := filepath.Join(t.TempDir(), "made-by-run")
	bind, _ := ParseVolume(host + ":/host")
	named, _ := ParseVolume("shared:/app/data")
	ro, _ := ParseVolume("shared:/ro:ro")
	rec, err := c.Create(ctx, "demo", CreateOptions{Volumes: []Volume{bind, named, ro}, Options: Options{
		Cmd: []string{"-c", "ls /app/data; echo from-container > /host/f; echo new > /app/data/new; touch /ro/x 2>/dev/null || echo ro"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if out, code := runFG(t, c, rec.ID); out != "only\nro\n" || code != 0 {
		t.Errorf("first container: %q, exit %d", out, code)
	}
	if b, err := os.ReadFile(filepath.Join(host, "f")); string(b) != "from-container\n" {
		t.Errorf("bind: %q %v", b, err)
	}
	if err := c.Remove(ctx, rec.ID, false, true); err != nil {
		t.Fatal(err)
	}
	// The named volume keeps its content for the next container.
	next, err := c.Create(ctx, "demo", CreateOptions{Volumes: []Volume{named}, Options: Options{Cmd: []string{"-c", "ls /app/data"}}})
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := runFG(t, c, next.ID); out != "new\nonly\n" {
		t.Errorf("named volume in the next container: %q", out)
	}

	// The image's VOLUME /app/data, with no -v there: an anonymous volume.
	anon, err := c.Create(ctx, "demo", CreateOptions{Options: Options{Cmd: []string{"-c", "echo kept > /app/data/k"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(anon.Volumes) != 1 || !anon.Volumes[0].Anonymous || anon.Volumes[0].Destination != "/app/data" {
		t.Fatalf("volumes of the image's VOLUME: %+v", anon.Volumes)
	}
	runFG(t, c, anon.ID)
	dir := c.volumeDir(anon.Volumes[0].Name)
	if b, _ := os.ReadFile(filepath.Join(dir, "k")); string(b) != "kept\n" {
		t.Errorf("anonymous volume: %q", b)
	}
	if err := c.Remove(ctx, anon.ID, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("rm without -v removed the anonymous volume: %v", err)
	}
	anon2, _ := c.Create(ctx, "demo", CreateOptions{})
	runFG(t, c, anon2.ID)
	dir2 := c.volumeDir(anon2.Volumes[0].Name)
	if err := c.Remove(ctx, anon2.ID, false, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rm -v left the anonymous volume: %v", err)
	}
	if _, err := os.Stat(c.volumeDir("shared")); err != nil {
		t.Errorf("a named volume went with rm -v: %v", err)
	}
}

func TestParsePublish(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Port
		err  string
	}{
		{"80", Port{HostIP: "127.0.0.1", ContainerPort: 80, Proto: "tcp"}, ""},
		{"8080:80", Port{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Proto: "tcp"}, ""},
		{"0.0.0.0:8080:80/udp", Port{HostIP: "0.0.0.0", HostPort: 8080, ContainerPort: 80, Proto: "udp"}, ""},
		{"[::1]:8080:80", Port{HostIP: "::1", HostPort: 8080, ContainerPort: 80, Proto: "tcp"}, ""},
		{"127.0.0.1::80", Port{HostIP: "127.0.0.1", ContainerPort: 80, Proto: "tcp"}, ""},
		{"80/sctp", Port{}, "tcp or udp"},
		{"x:80", Port{}, "not a port number"},
		{"nothost:1:80", Port{}, "not an IP address"},
		{"0", Port{}, "not a port number"},
		{"70000", Port{}, "not a port number"},
		{"1:2:3:4", Port{}, "want [HOST-IP:]"},
	} {
		got, err := ParsePublish(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error saying %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
}
