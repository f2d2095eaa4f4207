package treecmp

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-dev/strata/layerstore"
)

// fixedTime is the mtime every built entry gets, so that two builds agree.
const fixedTime = 1700000000_123456789

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown, mknod and trusted xattrs")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeFile creates path with content and exactly mode (raw bits, no umask).
func writeFile(t *testing.T, path, content string, mode uint32) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), 0o600))
	chmod(t, path, mode)
}

// chmod sets raw mode bits (os.Chmod wants setuid, setgid and sticky as
// os.FileMode flags).
func chmod(t *testing.T, path string, mode uint32) {
	t.Helper()
	must(t, unix.Chmod(path, mode))
}

// buildTree makes a small tree with one of everything Snapshot reads.
func buildTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	j := func(p string) string { return filepath.Join(root, p) }
	must(t, os.MkdirAll(j("etc"), 0o755))
	must(t, os.MkdirAll(j("usr/bin"), 0o755))
	must(t, os.MkdirAll(j("dev"), 0o755))
	must(t, os.MkdirAll(j("home/user"), 0o755))
	must(t, os.Mkdir(j("tmp"), 0o755))
	chmod(t, j("tmp"), 0o1777)
	chmod(t, root, 0o755)
	writeFile(t, j("etc/motd"), "hello\n", 0o644)
	must(t, unix.Lsetxattr(j("etc/motd"), "user.origin", []byte("fixture"), 0))
	must(t, unix.Lsetxattr(j("etc/motd"), "trusted.note", []byte("x"), 0))
	writeFile(t, j("usr/bin/tool"), "#!/bin/sh\n", 0o4755)
	writeFile(t, j("usr/bin/busybox"), "busybox", 0o755)
	for _, name := range []string{"sh", "ls", "cat"} {
		must(t, os.Link(j("usr/bin/busybox"), j("usr/bin/"+name)))
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		writeFile(t, j("home/user/"+name), "same", 0o644)
	}
	must(t, os.Link(j("home/user/a"), j("home/user/b2")))
	must(t, os.Link(j("home/user/c"), j("home/user/d2")))
	writeFile(t, j("home/user/notes.txt"), "notes\n", 0o600)
	must(t, os.Lchown(j("home/user"), 1000, 1000))
	must(t, os.Lchown(j("home/user/notes.txt"), 1000, 1000))
	must(t, os.Symlink("../bin/busybox", j("usr/bin/awk")))
	must(t, os.Symlink("/bin/busybox", j("usr/bin/init")))
	must(t, unix.Mknod(j("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	chmod(t, j("dev/null"), 0o666)
	must(t, unix.Mkfifo(j("tmp/pipe"), 0o644))
	chmod(t, j("tmp/pipe"), 0o644)
	fixTimes(t, root)
	return root
}

// fixTimes sets every mtime (and atime) under root to fixedTime, children
// before their directory.
func fixTimes(t *testing.T, root string) {
	t.Helper()
	var paths []string
	must(t, filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	ts := []unix.Timespec{unix.NsecToTimespec(fixedTime), unix.NsecToTimespec(fixedTime)}
	for _, p := range slices.Backward(paths) {
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

func snapshot(t *testing.T, root string, opt Options) *Tree {
	t.Helper()
	tr, err := Snapshot(root, opt)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestCompare_IdenticalCopies(t *testing.T) {
	requireRoot(t)
	a, b := buildTree(t), buildTree(t)
	opt := Options{IgnoreInodes: true}
	ta, tb := snapshot(t, a, opt), snapshot(t, b, opt)
	if d := Compare(ta, tb, opt); len(d) != 0 {
		t.Errorf("identical builds differ:\n%s", strings.Join(d, "\n"))
	}
	if d := Compare(ta, ta, Options{}); len(d) != 0 {
		t.Errorf("a tree differs from itself:\n%s", strings.Join(d, "\n"))
	}
	// A copy made by another tool (cp -a) agrees too.
	c := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", a, c).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	if d := Compare(ta, snapshot(t, c, opt), opt); len(d) != 0 {
		t.Errorf("cp -a copy differs:\n%s", strings.Join(d, "\n"))
	}
	// Spot-check what was read.
	n := ta.Nodes["etc/motd"]
	sum := sha256.Sum256([]byte("hello\n"))
	if n == nil || n.SHA256 != digest.FromBytes([]byte("hello\n")).Encoded() || n.Size != 6 ||
		n.Xattrs["user.origin"] != "fixture" || n.Xattrs["trusted.note"] != "x" || n.Mtime != fixedTime {
		t.Errorf("etc/motd read as %+v; want sha256 %x, size 6, both xattrs, mtime %d", n, sum, fixedTime)
	}
	if n := ta.Nodes["dev/null"]; n == nil || n.Type != layerstore.TypeChar || n.Devmajor != 1 || n.Devminor != 3 {
		t.Errorf("dev/null read as %+v", n)
	}
	if n := ta.Nodes["usr/bin/sh"]; n == nil || n.Nlink != 4 {
		t.Errorf("usr/bin/sh read as %+v; want nlink 4", n)
	}
	if n := ta.Nodes["tmp"]; n == nil || n.Mode != 0o1777 {
		t.Errorf("tmp read as %+v; want mode 1777", n)
	}
	if n := ta.Nodes[""]; n == nil || n.Type != layerstore.TypeDir {
		t.Errorf("root read as %+v", n)
	}
}

func TestCompare_Differences(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name   string
		change func(t *testing.T, j func(string) string)
		opt    Options
		want   []string // exactly these lines, in order
	}{
		{
			name:   "mode",
			change: func(t *testing.T, j func(string) string) { chmod(t, j("etc/motd"), 0o600) },
			want:   []string{"etc/motd: mode 0644 != 0600"},
		},
		{
			name:   "setuid bit",
			change: func(t *testing.T, j func(string) string) { chmod(t, j("usr/bin/tool"), 0o755) },
			want:   []string{"usr/bin/tool: mode 4755 != 0755"},
		},
		{
			name:   "owner",
			change: func(t *testing.T, j func(string) string) { must(t, os.Lchown(j("etc/motd"), 1000, 100)) },
			want:   []string{"etc/motd: owner 0:0 != 1000:100"},
		},
		{
			name:   "symlink owner",
			change: func(t *testing.T, j func(string) string) { must(t, os.Lchown(j("usr/bin/awk"), 7, 8)) },
			want:   []string{"usr/bin/awk: owner 0:0 != 7:8"},
		},
		{
			name: "content same size",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.WriteFile(j("etc/motd"), []byte("HELLO\n"), 0))
			},
			want: []string{"etc/motd: content sha256 " + digest.FromString("hello\n").Encoded()[:12] + " != " + digest.FromString("HELLO\n").Encoded()[:12]},
		},
		{
			name: "content and size",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.WriteFile(j("etc/motd"), []byte("hello!\n"), 0))
			},
			want: []string{"etc/motd: size 6 != 7", "etc/motd: content sha256 " + digest.FromString("hello\n").Encoded()[:12] + " != " + digest.FromString("hello!\n").Encoded()[:12]},
		},
		{
			name: "xattr value",
			change: func(t *testing.T, j func(string) string) {
				must(t, unix.Lsetxattr(j("etc/motd"), "user.origin", []byte("other"), 0))
			},
			want: []string{`etc/motd: xattr user.origin "fixture" != "other"`},
		},
		{
			name: "xattr removed",
			change: func(t *testing.T, j func(string) string) {
				must(t, unix.Lremovexattr(j("etc/motd"), "trusted.note"))
			},
			want: []string{"etc/motd: xattr trusted.note missing in B"},
		},
		{
			name: "xattr added",
			change: func(t *testing.T, j func(string) string) {
				must(t, unix.Lsetxattr(j("usr/bin/tool"), "security.capability", capNetBind, 0))
			},
			want: []string{`usr/bin/tool: xattr security.capability missing in A`},
		},
		{
			name: "xattr on a directory",
			change: func(t *testing.T, j func(string) string) {
				must(t, unix.Lsetxattr(j("etc"), "user.dir", []byte("1"), 0))
			},
			want: []string{"etc: xattr user.dir missing in A"},
		},
		{
			name: "xattr ignored by prefix",
			change: func(t *testing.T, j func(string) string) {
				must(t, unix.Lsetxattr(j("etc/motd"), "trusted.note", []byte("changed"), 0))
				must(t, unix.Lsetxattr(j("etc/motd"), "trusted.more", []byte("1"), 0))
			},
			opt: Options{IgnoreXattrPrefix: []string{"trusted."}},
		},
		{
			name: "symlink target",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.Remove(j("usr/bin/awk")))
				must(t, os.Symlink("/bin/busybox", j("usr/bin/awk")))
			},
			want: []string{`usr/bin/awk: symlink target "../bin/busybox" != "/bin/busybox"`},
		},
		{
			name: "file becomes dir",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.Remove(j("etc/motd")))
				must(t, os.Mkdir(j("etc/motd"), 0o644))
			},
			want: []string{"etc: nlink 2 != 3", "etc/motd: type file != dir"},
		},
		{
			name: "fifo becomes file",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.Remove(j("tmp/pipe")))
				writeFile(t, j("tmp/pipe"), "", 0o644)
			},
			want: []string{"tmp/pipe: type fifo != file"},
		},
		{
			name: "device numbers",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.Remove(j("dev/null")))
				must(t, unix.Mknod(j("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
				chmod(t, j("dev/null"), 0o666)
			},
			want: []string{"dev/null: device 1,3 != 1,5"},
		},
		{
			name: "char becomes block",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.Remove(j("dev/null")))
				must(t, unix.Mknod(j("dev/null"), unix.S_IFBLK|0o666, int(unix.Mkdev(1, 3))))
			},
			want: []string{"dev/null: type char != block"},
		},
		{
			name: "hard link broken",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.Remove(j("usr/bin/cat")))
				writeFile(t, j("usr/bin/cat"), "busybox", 0o755)
			},
			want: []string{
				"usr/bin/busybox: nlink 4 != 3",
				"usr/bin/cat: nlink 4 != 1",
				"usr/bin/ls: nlink 4 != 3",
				"usr/bin/sh: nlink 4 != 3",
				"hard-link groups differ: usr/bin/busybox: A links {usr/bin/busybox,usr/bin/cat,usr/bin/ls,usr/bin/sh}, B links {usr/bin/busybox,usr/bin/ls,usr/bin/sh}",
				"hard-link groups differ: usr/bin/cat: A links {usr/bin/busybox,usr/bin/cat,usr/bin/ls,usr/bin/sh}, B links {usr/bin/cat}",
			},
		},
		{
			// Same link counts everywhere, same contents: only the partition
			// tells the trees apart.
			name: "hard-link partition",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.Remove(j("home/user/b2")))
				must(t, os.Remove(j("home/user/d2")))
				must(t, os.Link(j("home/user/c"), j("home/user/b2")))
				must(t, os.Link(j("home/user/a"), j("home/user/d2")))
			},
			want: []string{
				"hard-link groups differ: home/user/a: A links {home/user/a,home/user/b2}, B links {home/user/a,home/user/d2}",
				"hard-link groups differ: home/user/b2: A links {home/user/a,home/user/b2}, B links {home/user/b2,home/user/c}",
				"hard-link groups differ: home/user/c: A links {home/user/c,home/user/d2}, B links {home/user/b2,home/user/c}",
				"hard-link groups differ: home/user/d2: A links {home/user/c,home/user/d2}, B links {home/user/a,home/user/d2}",
			},
		},
		{
			name:   "missing",
			change: func(t *testing.T, j func(string) string) { must(t, os.Remove(j("home/user/notes.txt"))) },
			want:   []string{"missing in B: home/user/notes.txt"},
		},
		{
			name:   "extra",
			change: func(t *testing.T, j func(string) string) { writeFile(t, j("etc/new"), "", 0o644) },
			want:   []string{"missing in A: etc/new"},
		},
		{
			name: "missing subtree",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.RemoveAll(j("home")))
			},
			want: []string{
				".: nlink 7 != 6", "missing in B: home", "missing in B: home/user", "missing in B: home/user/a", "missing in B: home/user/b",
				"missing in B: home/user/b2", "missing in B: home/user/c", "missing in B: home/user/d", "missing in B: home/user/d2",
				"missing in B: home/user/notes.txt",
			},
		},
		{
			name: "excluded",
			change: func(t *testing.T, j func(string) string) {
				must(t, os.Remove(j("home/user/notes.txt")))
				chmod(t, j("home/user/a"), 0o600)
				chmod(t, j("home"), 0o700)
			},
			opt: Options{Exclude: func(p string) bool { return p == "home" }},
		},
		{
			name:   "root mode",
			change: func(t *testing.T, j func(string) string) { chmod(t, j(""), 0o700) },
			want:   []string{".: mode 0755 != 0700"},
		},
		{
			name:   "root mode ignored",
			change: func(t *testing.T, j func(string) string) { chmod(t, j(""), 0o700) },
			opt:    Options{IgnoreRoot: true},
		},
		{
			name:   "mtime",
			change: func(t *testing.T, j func(string) string) { setMtime(t, j("etc/motd"), fixedTime+1) },
			want:   []string{"etc/motd: mtime 1700000000123456789 != 1700000000123456790"},
		},
		{
			name:   "mtime ignored",
			change: func(t *testing.T, j func(string) string) { setMtime(t, j("etc/motd"), 5) },
			opt:    Options{IgnoreMtime: true},
		},
		{
			name: "dir mtime ignored, file mtime not",
			change: func(t *testing.T, j func(string) string) {
				setMtime(t, j("etc"), 5)
				setMtime(t, j("usr/bin/awk"), 5)
			},
			opt:  Options{IgnoreDirMtime: true},
			want: []string{"usr/bin/awk: mtime 1700000000123456789 != 5"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := buildTree(t), buildTree(t)
			tc.change(t, func(p string) string { return filepath.Join(b, p) })
			if !strings.Contains(tc.name, "mtime") {
				fixTimes(t, b)
			}
			opt := tc.opt
			opt.IgnoreInodes = true
			got := Compare(snapshot(t, a, opt), snapshot(t, b, opt), opt)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Compare reported:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tc.want, "\n\t"))
			}
		})
	}
}

// capNetBind is a valid security.capability value (VFS_CAP_REVISION_2,
// CAP_NET_BIND_SERVICE permitted).
var capNetBind = []byte{0x00, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

func setMtime(t *testing.T, p string, ns int64) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
}

func TestCompare_Inodes(t *testing.T) {
	requireRoot(t)
	a, b := buildTree(t), buildTree(t)
	got := Compare(snapshot(t, a, Options{}), snapshot(t, b, Options{}), Options{})
	if len(got) == 0 {
		t.Fatal("two builds on one file system compare equal with inode numbers compared")
	}
	for _, l := range got {
		if !strings.Contains(l, ": inode ") {
			t.Errorf("unexpected difference %q; want only inode numbers", l)
		}
	}
}

func TestCompare_OptionalXattrs(t *testing.T) {
	a := &Tree{Nodes: map[string]*Node{
		"":  {Type: layerstore.TypeDir, Mode: 0o755, Nlink: 2},
		"f": {Path: "f", Type: layerstore.TypeReg, Mode: 0o644, Nlink: 1, Ino: 2, Xattrs: map[string]string{"security.selinux": "a_t", "system.posix_acl_access": "x"}},
	}}
	b := &Tree{Nodes: map[string]*Node{
		"":  {Type: layerstore.TypeDir, Mode: 0o755, Nlink: 2},
		"f": {Path: "f", Type: layerstore.TypeReg, Mode: 0o644, Nlink: 1, Ino: 2},
	}}
	if d := Compare(a, b, Options{}); len(d) != 0 {
		t.Errorf("absent security.selinux/ACL reported: %q", d)
	}
	b.Nodes["f"].Xattrs = map[string]string{"security.selinux": "b_t"}
	want := []string{`f: xattr security.selinux "a_t" != "b_t"`}
	if d := Compare(a, b, Options{}); !slices.Equal(d, want) {
		t.Errorf("got %q, want %q", d, want)
	}
}

func TestCompare_DirNlink(t *testing.T) {
	dir := func(nlink uint32) *Tree {
		return &Tree{Nodes: map[string]*Node{"": {Type: layerstore.TypeDir, Mode: 0o755, Nlink: nlink}}}
	}
	if d := Compare(dir(3), dir(1), Options{}); len(d) != 0 {
		t.Errorf("directory nlink 1 (not counted) reported: %q", d)
	}
	if d, want := Compare(dir(3), dir(2), Options{}), []string{".: nlink 3 != 2"}; !slices.Equal(d, want) {
		t.Errorf("got %q, want %q", d, want)
	}
}

// TestFromLayerTree builds the same tree as layer entries and on disk and
// expects no difference but inode numbers.
func TestFromLayerTree(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(t.TempDir(), "root")
	must(t, os.Mkdir(root, 0o755))
	chmod(t, root, 0o755)
	j := func(p string) string { return filepath.Join(root, p) }
	must(t, os.Mkdir(j("bin"), 0o755))
	must(t, os.Mkdir(j("dev"), 0o755))
	must(t, os.Mkdir(j("etc"), 0o700))
	chmod(t, j("etc"), 0o700)
	writeFile(t, j("bin/busybox"), "bb", 0o755)
	must(t, os.Link(j("bin/busybox"), j("bin/sh")))
	must(t, os.Symlink("busybox", j("bin/ls")))
	writeFile(t, j("etc/motd"), "hi\n", 0o600)
	must(t, os.Lchown(j("etc/motd"), 1, 2))
	chmod(t, j("etc/motd"), 0o4644) // after chown, which clears setuid
	must(t, unix.Lsetxattr(j("etc/motd"), "user.k", []byte("v"), 0))
	must(t, unix.Mknod(j("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	chmod(t, j("dev/null"), 0o666)
	must(t, unix.Mkfifo(j("dev/fifo"), 0o600))
	chmod(t, j("dev/fifo"), 0o600)
	fixTimes(t, root)

	ent := func(e layerstore.Entry) *layerstore.Entry {
		e.Mtime = fixedTime
		return &e
	}
	layer := []*layerstore.Entry{
		ent(layerstore.Entry{Path: "", Type: layerstore.TypeDir, Mode: 0o755}),
		ent(layerstore.Entry{Path: "bin", Type: layerstore.TypeDir, Mode: 0o755}),
		ent(layerstore.Entry{Path: "bin/busybox", Type: layerstore.TypeReg, Mode: 0o755, Size: 2, Digest: digest.FromString("bb")}),
		ent(layerstore.Entry{Path: "bin/ls", Type: layerstore.TypeSymlink, Mode: 0o777, Link: "busybox"}),
		ent(layerstore.Entry{Path: "bin/sh", Type: layerstore.TypeReg, Mode: 0o755, Size: 2, Digest: digest.FromString("bb"), HardLink: "bin/busybox"}),
		ent(layerstore.Entry{Path: "dev", Type: layerstore.TypeDir, Mode: 0o755}),
		ent(layerstore.Entry{Path: "dev/fifo", Type: layerstore.TypeFifo, Mode: 0o600}),
		ent(layerstore.Entry{Path: "dev/null", Type: layerstore.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}),
		ent(layerstore.Entry{Path: "etc", Type: layerstore.TypeDir, Mode: 0o700}),
		ent(layerstore.Entry{Path: "etc/motd", Type: layerstore.TypeReg, Mode: 0o4644, UID: 1, GID: 2, Size: 3, Digest: digest.FromString("hi\n"), Xattrs: map[string]string{"user.k": "v"}}),
	}
	slices.SortFunc(layer, func(a, b *layerstore.Entry) int {
		return strings.Compare(string(layerstore.Key(a.Path)), string(layerstore.Key(b.Path)))
	})
	lt, err := layerstore.BuildTree("", layer)
	must(t, err)
	opt := Options{IgnoreInodes: true}
	if d := Compare(FromLayerTree(lt), snapshot(t, root, opt), opt); len(d) != 0 {
		t.Errorf("layer tree and directory differ:\n%s", strings.Join(d, "\n"))
	}
	// A change on disk shows.
	chmod(t, j("etc/motd"), 0o644)
	want := []string{"etc/motd: mode 4644 != 0644"}
	if d := Compare(FromLayerTree(lt), snapshot(t, root, opt), opt); !slices.Equal(d, want) {
		t.Errorf("got %q, want %q", d, want)
	}
}

func TestSnapshot_Exclude(t *testing.T) {
	requireRoot(t)
	a := buildTree(t)
	tr := snapshot(t, a, Options{Exclude: func(p string) bool { return p == "usr" }, IgnoreXattrPrefix: []string{"trusted."}})
	for p := range tr.Nodes {
		if p == "usr" || strings.HasPrefix(p, "usr/") {
			t.Errorf("excluded path %s in snapshot", p)
		}
	}
	if _, ok := tr.Nodes["etc/motd"].Xattrs["trusted.note"]; ok {
		t.Error("ignored xattr prefix trusted. read")
	}
	if _, err := Snapshot(filepath.Join(a, "nonexistent"), Options{}); err == nil {
		t.Error("Snapshot of a missing directory succeeded")
	}
}
