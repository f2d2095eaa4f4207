package container

import (
	"context"
	"strings"
	"testing"
)

// The runtime's mountpoints (/proc, /sys, /etc/hosts…, a volume's path, the
// init) are no change of the container's: diff lists only what its command
// did, and commit makes an image of that with the run's settings.
func TestContainers_DiffCommit(t *testing.T) {
	c, _ := openContainers(t)
	ctx := context.Background()
	vol, _ := ParseVolume("/new/vol")
	rec, err := c.Create(ctx, "demo", CreateOptions{Name: "changer", Volumes: []Volume{vol}, Options: Options{
		Init: true, Env: []string{"NEW=1"}, WorkingDir: "/app",
		Cmd: []string{"-c", "echo hi > /app/hello; rm /etc/group; echo v > /new/vol/in-volume"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if out, code := runFG(t, c, rec.ID); code != 0 {
		t.Fatalf("run: %q, exit %d", out, code)
	}
	changes, err := c.Diff("changer")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ch := range changes {
		got = append(got, ch.String())
	}
	if want := "C /app|A /app/hello|C /etc|D /etc/group"; strings.Join(got, "|") != want {
		t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.ReplaceAll(want, "|", "\n"))
	}
	img, err := c.Commit(ctx, "changer", CommitOptions{Names: []string{"changed:latest"}, Message: "msg"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Config.Config.WorkingDir != "/app" || img.Config.Config.Env[0] != "NEW=1" || img.Config.Config.Cmd[1] != "echo hi > /app/hello; rm /etc/group; echo v > /new/vol/in-volume" {
		t.Errorf("committed config: %+v", img.Config.Config)
	}
	next, err := c.Create(ctx, "changed", CreateOptions{Options: Options{
		Cmd: []string{"-c", "cat /app/hello; ls /etc/group 2>&1; ls /proc/1 >/dev/null && echo proc; echo $NEW"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := runFG(t, c, next.ID); !strings.HasPrefix(out, "hi\nls: /etc/group: No such file or directory\nproc\n1\n") {
		t.Errorf("a container of the committed image: %q", out)
	}
}
