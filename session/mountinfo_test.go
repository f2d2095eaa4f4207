package session

import (
	"slices"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want []MountInfo // nil: skipped
	}{
		{"plain", `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw`,
			[]MountInfo{{ID: 22, Parent: 1, Root: "/", Dir: "/", Options: "rw,relatime", FSType: "ext4", Source: "/dev/sda1"}}},
		{"space in the mountpoint", `35 22 0:31 / /tmp/with\040space rw,nosuid,nodev,relatime shared:20 - fuse.strata strata:demo rw,user_id=0,group_id=0`,
			[]MountInfo{{ID: 35, Parent: 22, Root: "/", Dir: "/tmp/with space", Options: "rw,nosuid,nodev,relatime", FSType: "fuse.strata", Source: "strata:demo"}}},
		{"tab, newline and backslash", `36 22 0:32 /sub /mnt/a\011b\012c\134d rw - fuse x\040y rw`,
			[]MountInfo{{ID: 36, Parent: 22, Root: "/sub", Dir: "/mnt/a\tb\nc\\d", Options: "rw", FSType: "fuse", Source: "x y"}}},
		{"no optional fields", `37 22 0:33 / /mnt/plain rw - tmpfs tmpfs rw`,
			[]MountInfo{{ID: 37, Parent: 22, Root: "/", Dir: "/mnt/plain", Options: "rw", FSType: "tmpfs", Source: "tmpfs"}}},
		{"several optional fields", `38 22 0:34 / /mnt/p rw master:1 propagate_from:2 unbindable - tmpfs none rw`,
			[]MountInfo{{ID: 38, Parent: 22, Root: "/", Dir: "/mnt/p", Options: "rw", FSType: "tmpfs", Source: "none"}}},
		{"a backslash that is no escape", `39 22 0:35 / /mnt/x\9 rw - tmpfs none rw`,
			[]MountInfo{{ID: 39, Parent: 22, Root: "/", Dir: `/mnt/x\9`, Options: "rw", FSType: "tmpfs", Source: "none"}}},
		{"a mountpoint named -", `40 22 0:36 / - rw - tmpfs none rw`,
			[]MountInfo{{ID: 40, Parent: 22, Root: "/", Dir: "-", Options: "rw", FSType: "tmpfs", Source: "none"}}},
		{"no separator", `41 22 0:37 / /mnt rw tmpfs none rw`, nil},
		{"nothing after the separator", `42 22 0:38 / /mnt rw -`, nil},
		{"no source", `43 22 0:39 / /mnt rw - tmpfs`, nil},
		{"bad ID", `x 22 0:40 / /mnt rw - tmpfs none rw`, nil},
		{"garbage", `garbage line`, nil},
		{"empty", ``, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseMountinfo([]byte(tc.line + "\n")); !slices.Equal(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestMounted_MountsUnder(t *testing.T) {
	mi := ParseMountinfo([]byte(`1 0 0:1 / / rw - ext4 /dev/sda1 rw
2 1 0:2 / /mnt/a rw - tmpfs none rw
3 2 0:3 / /mnt/a/b\040c rw - fuse.strata strata rw
4 2 0:4 / /mnt/a rw - fuse.strata strata rw
5 1 0:5 / /mnt/ab rw - tmpfs none rw
`))
	if fstype, ok := Mounted(mi, "/mnt/a/"); !ok || fstype != "fuse.strata" {
		t.Errorf("Mounted(/mnt/a) = %q %v, want the topmost, fuse.strata", fstype, ok)
	}
	if _, ok := Mounted(mi, "/mnt"); ok {
		t.Errorf("Mounted(/mnt) = true")
	}
	if got, want := MountsUnder(mi, "/mnt/a"), []string{"/mnt/a/b c", "/mnt/a", "/mnt/a"}; !slices.Equal(got, want) {
		t.Errorf("MountsUnder = %q, want %q", got, want)
	}
	for fstype, want := range map[string]bool{"fuse": true, "fuse.strata": true, "fuseblk": false, "ext4": false} {
		if IsFUSE(fstype) != want {
			t.Errorf("IsFUSE(%q) = %v", fstype, !want)
		}
	}
}

func TestDetachFUSE_NotMounted(t *testing.T) {
	n, err := DetachFUSE(t.TempDir())
	if n != 0 || err != nil {
		t.Errorf("DetachFUSE of a plain directory: %d, %v", n, err)
	}
}
