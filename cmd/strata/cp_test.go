package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// tarNames lists the entries of a tar stream.
func tarNames(t *testing.T, s string) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(strings.NewReader(s))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		names = append(names, h.Name)
	}
}

func owner(t *testing.T, p string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode()
}

func TestCp_FromContainer(t *testing.T) {
	root := containerStore(t)
	// A stopped container with a tree in its top layer: an owned setuid
	// file, a link to the container's /etc/passwd, a link that climbs.
	mustRun(t, root, "run", "--name", "cc", "demo", "-c",
		"mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && ln -s /etc/passwd /d/link && "+
			"ln -s ../../../../../.. /d/up && chown 1000:1000 /d/a && chmod 4755 /d/a && ln /d/sub/b /d/hard")
	host := t.TempDir()
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(host, p))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return string(b)
	}
	ctrPasswd := mustRun(t, root, "cp", "cc:/etc/passwd", "-")
	if !slices.Equal(tarNames(t, ctrPasswd), []string{"passwd"}) {
		t.Errorf("cp c:/etc/passwd - names %q", tarNames(t, ctrPasswd))
	}

	// A directory to a new name, into an existing directory, and its contents.
	mustRun(t, root, "cp", "cc:/d", filepath.Join(host, "new"))
	if read("new/a") != "a\n" || read("new/sub/b") != "b\n" {
		t.Errorf("cp c:/d new: wrong contents")
	}
	if l, err := os.Readlink(filepath.Join(host, "new/link")); err != nil || l != "/etc/passwd" {
		t.Errorf("a symlink is copied as one: %q %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(host, "new/sub/b"))
	h, _ := os.Stat(filepath.Join(host, "new/hard"))
	if !os.SameFile(a, h) {
		t.Errorf("a hard link is not a link after the copy")
	}
	// Without -a: the caller owns what is copied out, with no setuid bit.
	if uid, _, mode := owner(t, filepath.Join(host, "new/a")); uid != 0 || mode&os.ModeSetuid != 0 || mode.Perm() != 0o755 {
		t.Errorf("cp without -a: uid %d mode %v; want 0, -rwxr-xr-x", uid, mode)
	}
	os.Mkdir(filepath.Join(host, "into"), 0o755)
	mustRun(t, root, "cp", "-a", "cc:/d", filepath.Join(host, "into"))
	if uid, gid, mode := owner(t, filepath.Join(host, "into/d/a")); uid != 1000 || gid != 1000 || mode&os.ModeSetuid == 0 {
		t.Errorf("cp -a: %d:%d %v; want 1000:1000 with setuid", uid, gid, mode)
	}
	os.Mkdir(filepath.Join(host, "contents"), 0o755)
	mustRun(t, root, "cp", "cc:/d/.", filepath.Join(host, "contents"))
	if read("contents/sub/b") != "b\n" {
		t.Errorf("cp c:/d/. dir: not the contents")
	}
	if got := tarNames(t, mustRun(t, root, "cp", "cc:/d/.", "-")); got[0] != "./" || !slices.Contains(got, "./sub/b") {
		t.Errorf("cp c:/d/. - names %q", got)
	}
	if got := tarNames(t, mustRun(t, root, "cp", "cc:/d", "-")); !slices.Equal(got, []string{"d/", "d/a", "d/hard", "d/link", "d/sub/", "d/sub/b", "d/up"}) {
		t.Errorf("cp c:/d - names %q", got)
	}

	// A file to a new name, onto a file, into a directory.
	mustRun(t, root, "cp", "cc:/d/a", filepath.Join(host, "file"))
	mustRun(t, root, "cp", "cc:/d/sub/b", filepath.Join(host, "file"))
	mustRun(t, root, "cp", "cc:/d/a", filepath.Join(host, "into"))
	if read("file") != "b\n" || read("into/a") != "a\n" {
		t.Errorf("file copies: %q %q", read("file"), read("into/a"))
	}
	// -L follows the link inside the container, and keeps the link's name.
	mustRun(t, root, "cp", "-L", "cc:/d/link", filepath.Join(host, "into"))
	if got := read("into/link"); got != tarBody(t, ctrPasswd) {
		t.Errorf("cp -L c:/d/link: %q, not the container's /etc/passwd", got)
	}
	// A path that climbs out of the root stays in it.
	mustRun(t, root, "cp", "cc:/d/up/etc/passwd", filepath.Join(host, "up-passwd"))
	if got := read("up-passwd"); got != tarBody(t, ctrPasswd) {
		t.Errorf("cp c:/d/up/etc/passwd: %q, not the container's /etc/passwd", got)
	}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"cc:/nosuch", host}, "Error: No such container:path: cc:/nosuch\n"},
		{[]string{"nosuch:/etc", host}, "Error: No such container: nosuch\n"},
		{[]string{"cc:/d", filepath.Join(host, "file")}, "Error: cannot copy directory\n"},
		{[]string{"cc:/d/a", filepath.Join(host, "nodir") + "/"}, "Error: no such directory\n"},
		{[]string{"cc:/d", "cc:/e"}, "Error: copying between containers is not supported\n"},
		{[]string{host, filepath.Join(host, "x")}, "Error: must specify at least one container source\n"},
	} {
		if r := runStrata(t, root, "", append([]string{"cp"}, tc.args...)...); r.code != 1 || r.stderr != tc.msg {
			t.Errorf("cp %q: exit %d %q, want 1 %q", tc.args, r.code, r.stderr, tc.msg)
		}
	}
}

// tarBody is the contents of the one file in a tar stream.
func tarBody(t *testing.T, s string) string {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(s))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(tr)
	return string(b)
}

func TestCp_ToContainer(t *testing.T) {
	root := containerStore(t)
	t.Setenv(cliEnv, "1") // the supervisor run -d starts is this test binary
	host := t.TempDir()
	write := func(p, s string) string {
		full := filepath.Join(host, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(s), 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chown(full, 1234, 1234)
		return full
	}
	f := write("f.txt", "hello\n")
	write("tree/x", "x\n")
	write("tree/sub/y", "y\n")
	// A name no host path has: where a copy that escaped would land.
	escape := "strata-cp-escape-" + filepath.Base(host)
	t.Cleanup(func() { os.Remove("/tmp/" + escape); os.Remove("/etc/" + escape) })

	mustRun(t, root, "create", "--name", "vol", "-v", "/data", "demo", "-c", "sleep 30")
	mustRun(t, root, "run", "-d", "--name", "live", "demo", "-c", "ln -s /../../.. /tmp/esc; mkdir /tmp/ready; sleep 30")
	waitFor(t, "the container's setup", func() bool {
		return runStrata(t, root, "", "exec", "live", "sh", "-c", "[ -d /tmp/ready ]").code == 0
	})
	for _, ctr := range []string{"vol", "live"} {
		t.Run(ctr, func(t *testing.T) {
			cat := func(p string) string {
				t.Helper()
				return tarBody(t, mustRun(t, root, "cp", ctr+":"+p, "-"))
			}
			mustRun(t, root, "cp", f, ctr+":/tmp/")
			mustRun(t, root, "cp", f, ctr+":/tmp/renamed")
			mustRun(t, root, "cp", "-a", f, ctr+":/tmp/kept")
			mustRun(t, root, "cp", filepath.Join(host, "tree")+"/.", ctr+":/newdir")
			mustRun(t, root, "cp", filepath.Join(host, "tree"), ctr+":/newdir")
			if cat("/tmp/f.txt") != "hello\n" || cat("/tmp/renamed") != "hello\n" || cat("/newdir/sub/y") != "y\n" || cat("/newdir/tree/x") != "x\n" {
				t.Errorf("copies into the container differ")
			}
			// Owners: root without -a, the source's with it.
			hdr := func(p string) *tar.Header {
				tr := tar.NewReader(strings.NewReader(mustRun(t, root, "cp", ctr+":"+p, "-")))
				h, err := tr.Next()
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			if h := hdr("/tmp/f.txt"); h.Uid != 0 || h.Gid != 0 || h.Mode != 0o640 {
				t.Errorf("cp without -a: %d:%d %o, want 0:0 640", h.Uid, h.Gid, h.Mode)
			}
			if h := hdr("/tmp/kept"); h.Uid != 1234 || h.Gid != 1234 {
				t.Errorf("cp -a: %d:%d, want 1234:1234", h.Uid, h.Gid)
			}
			// A tar stream on stdin, with a link to / and a file through it:
			// the file lands in the container's /tmp, not the host's.
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"})
			tw.WriteHeader(&tar.Header{Name: "l/tmp/" + escape, Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
			tw.Write([]byte("in\n"))
			tw.Close()
			if r := runStrata(t, root, b.String(), "cp", "-", ctr+":/"); r.err != nil {
				t.Fatalf("cp - %s:/: %v %s", ctr, r.err, r.stderr)
			}
			if cat("/tmp/"+escape) != "in\n" {
				t.Errorf("the tar stream's file is not in the container's /tmp")
			}
			b.Reset()
			tw = tar.NewWriter(&b)
			tw.WriteHeader(&tar.Header{Name: "../../" + escape, Typeflag: tar.TypeReg, Mode: 0o644})
			tw.Close()
			if r := runStrata(t, root, b.String(), "cp", "-", ctr+":/tmp"); r.code != 1 || !strings.Contains(r.stderr, "invalid argument") {
				t.Errorf("an entry that climbs out: exit %d %q", r.code, r.stderr)
			}
			if r := runStrata(t, root, "", "cp", "-", ctr+":/tmp/f.txt"); r.code != 1 || r.stderr != "Error: destination \""+ctr+":/tmp/f.txt\" must be a directory\n" {
				t.Errorf("cp - onto a file: exit %d %q", r.code, r.stderr)
			}
			if r := runStrata(t, root, "", "cp", f, ctr+":/nosuch/dir/"); r.code != 1 {
				t.Errorf("cp into a missing directory: exit %d %q", r.code, r.stderr)
			}
			for _, p := range []string{"/tmp/" + escape, "/etc/" + escape} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s: a copy into the container reached the host", p)
				}
			}
		})
	}
	// Through the running container's symlink to its own root.
	mustRun(t, root, "cp", f, "live:/tmp/esc/etc/"+escape)
	if got := mustRun(t, root, "exec", "live", "cat", "/etc/"+escape); got != "hello\n" {
		t.Errorf("a copy through a climbing link: %q in the container", got)
	}
	if _, err := os.Lstat("/etc/" + escape); err == nil {
		t.Errorf("a copy through a climbing link reached the host's /etc")
	}
	// The stopped container's volume got the copy: it is there at its start.
	mustRun(t, root, "cp", f, "vol:/data/")
	mustRun(t, root, "start", "vol")
	if got := mustRun(t, root, "exec", "vol", "cat", "/data/f.txt"); got != "hello\n" {
		t.Errorf("a copy into a stopped container's volume: %q", got)
	}
	mustRun(t, root, "create", "--name", "ro", "--read-only", "demo", "true")
	if r := runStrata(t, root, "", "cp", f, "ro:/"); r.code != 1 || r.stderr != "Error: container rootfs is marked read-only\n" {
		t.Errorf("cp into a read-only container: exit %d %q", r.code, r.stderr)
	}
	// Its volume (the image's VOLUME /app/data) takes copies, but not
	// through a link in it that leads back into the read-only root.
	mustRun(t, root, "cp", f, "ro:/app/data/")
	link := filepath.Join(t.TempDir(), "up")
	if err := os.Symlink("/etc", link); err != nil {
		t.Fatal(err)
	}
	mustRun(t, root, "cp", link, "ro:/app/data/")
	if r := runStrata(t, root, "", "cp", f, "ro:/app/data/up/"); r.code != 1 || r.stderr != "Error: container rootfs is marked read-only\n" {
		t.Errorf("cp through a volume's link into a read-only root: exit %d %q", r.code, r.stderr)
	}
	// Nor through a link the copy itself makes in the volume: a tar stream
	// with a link to the root (absolute and climbing), then files through it.
	for _, target := range []string{"/", "../.."} {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "back", Typeflag: tar.TypeSymlink, Linkname: target})
		tw.WriteHeader(&tar.Header{Name: "back/etc/" + escape, Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
		tw.Write([]byte("in\n"))
		tw.Close()
		r := runStrata(t, root, b.String(), "cp", "-", "ro:/app/data")
		if r.code != 1 || !strings.Contains(r.stderr, "read-only file system") {
			t.Errorf("a tar stream through its own link %q into the read-only root: exit %d %q", target, r.code, r.stderr)
		}
		if r := runStrata(t, root, "", "cp", "ro:/etc/"+escape, "-"); r.code != 1 {
			t.Errorf("the file landed in the read-only root through a link to %q", target)
		}
		mustRun(t, root, "exec", "live", "true") // (the running container is untouched)
		if _, err := os.Lstat("/etc/" + escape); err == nil {
			t.Errorf("a copy through a link to %q reached the host's /etc", target)
		}
	}
}

// Extended attributes go both ways, into a running container and a stopped
// one: user.* always, file capabilities into a container and, with -a
// only, out of one (as a setuid bit); what the container holds is read
// from outside it, not through strata cp.
func TestCp_Xattrs(t *testing.T) {
	root := containerStore(t)
	t.Setenv(cliEnv, "1") // the supervisor run -d starts is this test binary
	host := t.TempDir()
	// cap_net_raw+ep, as setcap writes it (VFS_CAP_REVISION_2).
	capNetRaw := string([]byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	src := filepath.Join(host, "d")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("f\n"), 0o644)
	os.WriteFile(filepath.Join(src, "capf"), []byte("#!/bin/sh\n"), 0o755)
	for _, x := range []struct{ path, name, value string }{
		{src, "user.dir", "x"},
		{filepath.Join(src, "f"), "user.color", "blue"},
		{filepath.Join(src, "capf"), "security.capability", capNetRaw},
	} {
		if err := syscall.Setxattr(x.path, x.name, []byte(x.value), 0); err != nil {
			t.Skipf("the test's directory keeps no %s: %v", x.name, err)
		}
	}
	xattr := func(p, name string) string {
		t.Helper()
		buf := make([]byte, 256)
		n, err := syscall.Getxattr(p, name, buf)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(buf[:n])
	}
	mustRun(t, root, "create", "--name", "stopped", "demo", "-c", "sleep 30")
	mustRun(t, root, "run", "-d", "--name", "live", "demo", "-c", "sleep 30")
	for _, ctr := range []string{"stopped", "live"} {
		t.Run(ctr, func(t *testing.T) {
			mustRun(t, root, "cp", src, ctr+":/tmp/")
			mustRun(t, root, "cp", "-a", src, ctr+":/tmp/kept")
			if got := mustRun(t, root, "start", ctr); got != ctr+"\n" { // a no-op for the running one, as docker's
				t.Errorf("start printed %q", got)
			}
			pid := strings.TrimSpace(mustRun(t, root, "container", "inspect", "--format", "{{.State.Pid}}", ctr))
			inside := func(p string) string { return fmt.Sprintf("/proc/%s/root%s", pid, p) }
			for _, d := range []string{"/tmp/d", "/tmp/kept"} {
				if got := xattr(inside(d), "user.dir"); got != "x" {
					t.Errorf("%s in the container: user.dir %q", d, got)
				}
				if got := xattr(inside(d+"/f"), "user.color"); got != "blue" {
					t.Errorf("%s/f in the container: user.color %q", d, got)
				}
				if got := xattr(inside(d+"/capf"), "security.capability"); got != capNetRaw {
					t.Errorf("%s/capf in the container: security.capability %q", d, got)
				}
			}
			out := filepath.Join(t.TempDir(), "out")
			mustRun(t, root, "cp", ctr+":/tmp/d", out)
			mustRun(t, root, "cp", "-a", ctr+":/tmp/d", out+"-a")
			if got := xattr(out, "user.dir"); got != "x" {
				t.Errorf("copied out: user.dir %q", got)
			}
			if got := xattr(filepath.Join(out, "f"), "user.color"); got != "blue" {
				t.Errorf("copied out: user.color %q", got)
			}
			if got := xattr(filepath.Join(out, "capf"), "security.capability"); !strings.Contains(got, "no data") {
				t.Errorf("copied out without -a: security.capability %q, want none", got)
			}
			if got := xattr(filepath.Join(out+"-a", "capf"), "security.capability"); got != capNetRaw {
				t.Errorf("copied out with -a: security.capability %q", got)
			}
			mustRun(t, root, "stop", "-t", "0", ctr)
		})
	}
}
