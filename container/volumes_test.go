package container

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/internal/treecmp"
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

// What the image holds at a VOLUME path is copied into the new volume as
// cp -a copies it (the reference: cp -a of the same tree), links in the
// path followed inside the image's root only.
func TestCopyImageContent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: owners, device nodes, file capabilities")
	}
	rootfs := t.TempDir()
	src := filepath.Join(rootfs, "img", "vol")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "sub"), 0o700))
	must(os.WriteFile(filepath.Join(src, "f"), []byte("f\n"), 0o644))
	must(os.WriteFile(filepath.Join(src, "suid"), []byte("s\n"), 0o755))
	must(os.Chmod(filepath.Join(src, "suid"), 0o4755))
	must(os.WriteFile(filepath.Join(src, "sub", "deep"), []byte("d\n"), 0o600))
	must(os.Link(filepath.Join(src, "f"), filepath.Join(src, "hard")))
	must(os.Symlink("../f", filepath.Join(src, "sub", "link")))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o640))
	must(unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.Chown(filepath.Join(src, "sub", "deep"), 1000, 1000))
	must(os.Lchown(filepath.Join(src, "sub", "link"), 1000, 1000))
	must(unix.Setxattr(filepath.Join(src, "f"), "user.color", []byte("blue"), 0))
	must(unix.Setxattr(filepath.Join(src, "sub"), "user.dir", []byte("x"), 0))
	must(os.Chown(src, 1000, 1001))
	must(os.Chmod(src, 0o750))
	ts := time.Unix(1700000000, 123456789)
	for _, p := range []string{"f", "sub/deep", "fifo", "sub", "."} {
		must(os.Chtimes(filepath.Join(src, p), ts, ts))
	}
	must(unix.Lutimes(filepath.Join(src, "sub", "link"), []unix.Timeval{unix.NsecToTimeval(ts.UnixNano()), unix.NsecToTimeval(ts.UnixNano())}))
	must(os.Symlink("/img/vol", filepath.Join(rootfs, "img", "lnk"))) // absolute: inside the root
	must(os.Symlink("/etc", filepath.Join(rootfs, "img", "out")))     // the root has no /etc

	ref := filepath.Join(t.TempDir(), "ref")
	must(os.Mkdir(ref, 0o755))
	if out, err := exec.Command("cp", "-a", src+"/.", ref).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	want, err := treecmp.Snapshot(ref, treecmp.Options{})
	must(err)
	for _, dst := range []string{"/img/vol", "/img/lnk", "/img/../img/lnk/"} {
		vol := filepath.Join(t.TempDir(), "_data")
		must(os.Mkdir(vol, 0o755))
		must(copyImageContent(rootfs, dst, vol))
		got, err := treecmp.Snapshot(vol, treecmp.Options{})
		must(err)
		if diffs := treecmp.Compare(want, got, treecmp.Options{IgnoreInodes: true}); len(diffs) > 0 {
			t.Errorf("volume of %s differs from cp -a:\n%s", dst, strings.Join(diffs, "\n"))
		}
	}
	// A link out of the root reads the root's /etc, which is not there.
	vol := t.TempDir()
	must(copyImageContent(rootfs, "/img/out", vol))
	if ents, _ := os.ReadDir(vol); len(ents) != 0 {
		t.Errorf("a link to /etc copied %d entries (the host's?)", len(ents))
	}
	// A volume that holds something already is left as it is.
	must(os.WriteFile(filepath.Join(vol, "mine"), nil, 0o644))
	must(copyImageContent(rootfs, "/img/vol", vol))
	if ents, _ := os.ReadDir(vol); len(ents) != 1 {
		t.Errorf("a volume with content got more: %d entries", len(ents))
	}
}

// A process killed in the middle of a volume's first fill leaves it
// half-filled and marked: check names it, and the next container that
// mounts it gets what its image has there, not the half-copied files.
func TestContainers_VolumeFillKilled(t *testing.T) {
	c, _ := openContainers(t)
	ctx := context.Background()
	// A tree large enough that the fill is still copying when the kill
	// lands: 8000 files.
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 8000 {
		if err := os.WriteFile(filepath.Join(src, "data", fmt.Sprintf("f%05d", i)), []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vol := filepath.Join(c.st.Root(), "volumes", "halfway")
	data := filepath.Join(vol, volumeData)
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	killFill := func() {
		t.Helper()
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		fill := exec.Command(self)
		fill.Env = append(os.Environ(), fillEnv+"="+src+"\n/data\n"+vol)
		if err := fill.Start(); err != nil {
			t.Fatal(err)
		}
		for {
			if empty, err := emptyDir(data); err != nil || !empty {
				break
			}
			time.Sleep(time.Millisecond)
		}
		fill.Process.Kill()
		if err := fill.Wait(); err == nil {
			t.Fatal("the fill ended before the kill: the test needs a larger tree")
		}
		if got, err := InterruptedFills(c.st.Root()); err != nil || len(got) != 1 || got[0] != "halfway" {
			t.Fatalf("InterruptedFills after the kill: %q %v", got, err)
		}
	}
	// gc's way: emptied, as it was before the fill.
	killFill()
	if got, err := ResetInterruptedFills(c.st.Root()); err != nil || len(got) != 1 || got[0] != "halfway" {
		t.Errorf("ResetInterruptedFills: %q %v", got, err)
	}
	if empty, err := emptyDir(data); err != nil || !empty {
		t.Errorf("the volume after ResetInterruptedFills: empty %v, %v", empty, err)
	}
	if got, err := InterruptedFills(c.st.Root()); err != nil || len(got) != 0 {
		t.Errorf("InterruptedFills after the reset: %q %v", got, err)
	}
	// The next container's way: emptied and filled from its image.
	killFill()
	// The same path of the image without a volume is the reference.
	plain, err := c.Create(ctx, "demo", CreateOptions{Name: "plain", Options: Options{Cmd: []string{"-c", "ls -A /bin"}}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := runFG(t, c, plain.ID)
	v, _ := ParseVolume("halfway:/bin")
	rec, err := c.Create(ctx, "demo", CreateOptions{Name: "refill", Volumes: []Volume{v}, Options: Options{Cmd: []string{"-c", "ls -A /bin"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, code := runFG(t, c, rec.ID)
	if code != 0 || got != want || strings.Contains(got, "f00000") {
		t.Errorf("the volume after a killed fill holds:\n%s\nwant what the image has at /bin:\n%s", got, want)
	}
	if got, err := InterruptedFills(c.st.Root()); err != nil || len(got) != 0 {
		t.Errorf("InterruptedFills after the refill: %q %v", got, err)
	}
}

// A volume at /etc is filled from the image's /etc and still gets the
// container's /etc/hostname, /etc/hosts and /etc/resolv.conf on top, as
// docker mounts parents before what they hold.
func TestContainers_VolumeAtEtc(t *testing.T) {
	c, _ := openContainers(t)
	ctx := context.Background()
	plain, err := c.Create(ctx, "demo", CreateOptions{Name: "plain", Options: Options{Cmd: []string{"-c", "ls -A /etc"}}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := runFG(t, c, plain.ID)
	v, _ := ParseVolume("etc:/etc")
	rec, err := c.Create(ctx, "demo", CreateOptions{Name: "etc", Volumes: []Volume{v}, Options: Options{Hostname: "inside", Cmd: []string{"-c", "ls -A /etc; cat /etc/hostname"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, code := runFG(t, c, rec.ID); code != 0 || got != want+"inside\n" {
		t.Errorf("a volume at /etc shows:\n%s\nwant\n%sinside", got, want)
	}
}

// A volume's fill is on disk before its marker goes: what a power loss
// leaves (the disk as it is at that instant, read from a copy of a loop
// device's backing file and mounted, its journal replayed) is either a
// marked fill, which the next one redoes, or a volume that holds every
// file of the image, whole, with its symlink, FIFO, owners and xattrs; and
// once the fill returns, the latter. Nothing is synced before the fill: it
// stands alone. ext4 commits its whole journal on any fsync, so the disk
// alone cannot tell whether each directory was synced: the fill's syncs
// are checked path by path too. A fill of at most fillSyncEach files and
// directories fsyncs each, a larger one syncs its file system.
func TestFillVolume_DurableBeforeMarkerGoes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop mounts")
	}
	for _, tool := range []string{"mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	for _, c := range []struct {
		name         string
		files, dirs  int
		syncedByFile bool
	}{
		{"few files", 10, 2, true},
		{"16 files and directories", 13, 2, true},
		{"17 files and directories", 14, 2, false},
		{"many files", 200, 7, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if n := c.files + c.dirs + 1; (n <= fillSyncEach) != c.syncedByFile {
				t.Fatalf("%d files and directories: not the case it stands for (fillSyncEach %d)", n, fillSyncEach)
			}
			testFillDurable(t, c.files, c.dirs, c.syncedByFile)
		})
	}
}

// fillOwner is the owner of the fill's test file and FIFO.
const fillOwner, fillGroup = 1234, 5678

func testFillDurable(t *testing.T, files, dirs int, syncedByFile bool) {
	rootfs := t.TempDir()
	src := filepath.Join(rootfs, "vol")
	want := map[string][]byte{}
	for i := range files {
		name := filepath.Join(fmt.Sprintf("d%d", i%dirs), fmt.Sprintf("f%03d", i))
		b := make([]byte, 1000+i*97)
		for j := range b {
			b[j] = byte(i*31 + j)
		}
		want[name] = b
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// What is not a file or directory (not counted against fillSyncEach,
	// not fsynced itself: its directory is), an owner and an xattr.
	for _, err := range []error{
		os.Symlink("d0/f000", filepath.Join(src, "link")),
		unix.Mkfifo(filepath.Join(src, "d1/fifo"), 0o640),
		os.Lchown(filepath.Join(src, "d1/fifo"), fillOwner, fillGroup),
		os.Lchown(filepath.Join(src, "d0/f000"), fillOwner, fillGroup),
		unix.Setxattr(filepath.Join(src, "d0/f000"), "user.fill", []byte("kept"), 0),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	root := loopMount(t, img, true)
	vol := filepath.Join(root, "volumes", "v")
	if err := os.MkdirAll(filepath.Join(vol, volumeData), 0o755); err != nil {
		t.Fatal(err)
	}
	// afterLoss checks the store a power loss now would leave.
	afterLoss := func(when string, marked, filled bool) {
		t.Helper()
		lost := filepath.Join(t.TempDir(), "lost.img")
		if out, err := exec.Command("cp", "--sparse=always", img, lost).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		r := loopMount(t, lost, false)
		if got, err := InterruptedFills(r); err != nil || (len(got) == 1) != marked {
			t.Errorf("%s: the disk has the fills %q marked (%v), want marked %v", when, got, err, marked)
		}
		if !filled {
			return
		}
		data := filepath.Join(r, "volumes", "v", volumeData)
		for name, b := range want {
			if got, err := os.ReadFile(filepath.Join(data, name)); err != nil || string(got) != string(b) {
				t.Errorf("%s: %s on disk: %d bytes, %v; want %d", when, name, len(got), err, len(b))
				return
			}
		}
		if got, err := os.Readlink(filepath.Join(data, "link")); err != nil || got != "d0/f000" {
			t.Errorf("%s: link on disk: %q %v", when, got, err)
		}
		for name, typ := range map[string]uint32{"d1/fifo": unix.S_IFIFO, "d0/f000": unix.S_IFREG} {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(data, name), &st); err != nil || st.Mode&unix.S_IFMT != typ || st.Uid != fillOwner || st.Gid != fillGroup {
				t.Errorf("%s: %s on disk: mode %o, owner %d:%d, %v; want type %o, owner %d:%d", when, name, st.Mode, st.Uid, st.Gid, err, typ, fillOwner, fillGroup)
			}
		}
		buf := make([]byte, 16)
		if n, err := unix.Getxattr(filepath.Join(data, "d0/f000"), "user.fill", buf); err != nil || string(buf[:n]) != "kept" {
			t.Errorf("%s: d0/f000's user.fill on disk: %q %v", when, buf[:max(n, 0)], err)
		}
	}
	synced := map[string]string{}
	fillSynced = func(op, p string) { synced[p] = op }
	afterMarker = func(string) { afterLoss("before the first file", true, false) }
	beforeMarkerRemoved = func(string) { afterLoss("before the marker's removal", true, true) }
	t.Cleanup(func() { afterMarker, beforeMarkerRemoved, fillSynced = nil, nil, nil })
	if err := fillVolume(rootfs, "/vol", vol); err != nil {
		t.Fatal(err)
	}
	afterLoss("after the fill", false, true)

	// Each sync, path by path: the volume's own entries for the marker,
	// then each file and directory of the fill, or its file system.
	for _, d := range []string{vol, filepath.Dir(vol), root} {
		if synced[d] != "fsync" {
			t.Errorf("%s: not fsynced (the marker's and the volume's entries)", d)
		}
	}
	data := filepath.Join(vol, volumeData)
	if !syncedByFile {
		if synced[data] != "syncfs" {
			t.Errorf("a fill of more than %d files and directories: its file system not synced (%v)", fillSyncEach, synced)
		}
		return
	}
	n := 0
	if err := filepath.WalkDir(data, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch op, want := synced[p], d.IsDir() || d.Type().IsRegular(); {
		case want && op != "fsync":
			t.Errorf("%s: not fsynced", p)
		case !want && op != "":
			t.Errorf("%s (%v): %s, want only its directory synced", p, d.Type(), op)
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != files+dirs+1+2 {
		t.Errorf("the fill holds %d entries, want %d", n, files+dirs+1+2)
	}
}

// loopMount mounts the ext4 file system in image file img (made first,
// if mkfs) on a new directory, until the test ends, and returns it.
func loopMount(t *testing.T, img string, mkfs bool) string {
	t.Helper()
	if mkfs {
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 64<<20); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v %s", err, out)
		}
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("no loop mount here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}
