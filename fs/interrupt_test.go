package fs

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// nodeAt returns the bridge's node of rel, which the kernel has looked up.
func nodeAt(t *testing.T, m *testMount, rel ...string) *node {
	t.Helper()
	in := m.srv.u.root.EmbeddedInode()
	for _, name := range rel {
		if in = in.GetChild(name); in == nil {
			t.Fatalf("%v: no Inode of %s", rel, name)
		}
	}
	return in.Operations().(*node)
}

// TestFS_InterruptedOpen: an OPEN whose caller is killed, or gets a signal,
// while the server holds the request leaves no open counted once the
// caller is gone. The kernel waits for the reply of a request the server
// has read, whatever the signal (request_wait_answer in fs/fuse/dev.c),
// takes the handle and releases it with the file; so the file passes
// through again afterwards. (A reply the kernel never takes needs a
// connection that ended: see TestFS_AbortClosesHandles.)
func TestFS_InterruptedOpen(t *testing.T) {
	img := baseImage(t)
	m := mountTraced(t, img, mountOpts{passthrough: true})
	if !m.srv.Passthrough() {
		t.Skipf("no passthrough here: %s", m.logs.String())
	}
	if err := os.WriteFile(m.p("tmp/f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitNoOpens(t, m, "tmp/f")
	n := nodeAt(t, m, "tmp", "f")
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			m.srv.Trace(true)
			cmd := exec.Command("sh", "-c", `trap 'exit 3' INT; exec 3<>"$1"; echo opened`, "sh", m.p("tmp/f"))
			n.lock() // the OPEN waits here, in the server
			locked, waited := true, false
			defer func() {
				if locked {
					n.unlock() // first: the kernel holds even a killed opener until the reply
				}
				if cmd.Process != nil && !waited {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
				}
			}()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "OPEN in the server", func() bool { return traceOf(m, "OPEN") > 0 })
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			n.unlock()
			locked = false
			err := cmd.Wait()
			waited = true
			if err == nil {
				t.Errorf("the opener was not stopped by %v", sig)
			}
			if traceOf(m, "RELEASE") == 0 {
				waitFor(t, "the interrupted open's RELEASE", func() bool { return traceOf(m, "RELEASE") > 0 })
			}
			waitNoOpens(t, m, "tmp/f")
			// The file passes through again: the count did not stay raised.
			m.srv.Trace(true)
			if err := os.WriteFile(m.p("tmp/f"), []byte(fmt.Sprint("after ", sig)), 0o644); err != nil {
				t.Fatal(err)
			}
			if w := traceOf(m, "WRITE"); w != 0 {
				t.Errorf("after an interrupted open the file took %d WRITEs, want none (passthrough)", w)
			}
			waitNoOpens(t, m, "tmp/f")
		})
	}
}
