package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-dev/strata/internal/syncbuf"
	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/layerstore/imagefmt"
	"github.com/strata-dev/strata/session"
	"github.com/strata-dev/strata/transfer"
)

// ServeOptions configure Serve.
type ServeOptions struct {
	Store    string // store root
	Image    string // reference of the image to mount
	Dir      string // mountpoint
	ReadOnly bool   // mount without a top layer
	// NoPassthrough turns FUSE passthrough off (default: on where the
	// kernel has it).
	NoPassthrough bool
	// Trace counts FUSE requests by opcode (the trace command).
	Trace bool
	In    io.Reader // commands; EOF unmounts
	Out   io.Writer // replies
}

// Serve is the strata contender's server, run in a child process so that
// the FUSE server and the workloads do not share a Go runtime. It runs a
// mount session of the image (its top layer in the store, deleted at the
// end), writes "ready passthrough=BOOL open=D tree=D mount=D" (the time it
// took to open the store, load the merged tree and mount), and then answers
// commands read line by line from In:
//
//	profile FILE   start a CPU profile of this process into FILE
//	stop           stop the CPU profile
//	trace          the FUSE requests served since the last trace, by
//	               opcode: "ok OP=N/NS OP=N/NS ..." (needs Trace), N
//	               requests that took the server NS nanoseconds
//
// each with "ok" or "error: ...". At EOF on In (the harness closed it or
// died), on SIGINT or SIGTERM, or when ctx ends, it unmounts and returns.
func Serve(ctx context.Context, o ServeOptions) (err error) {
	t0 := time.Now()
	st, err := layerstore.Open(o.Store, nil)
	if err != nil {
		return err
	}
	open := time.Since(t0)
	sess, err := session.Start(ctx, st, o.Image, o.Dir, session.Options{
		ReadOnly:      o.ReadOnly,
		NoPassthrough: o.NoPassthrough,
		Trace:         o.Trace,
		FsName:        "strata-bench",
	})
	if err != nil {
		return err
	}
	var prof *os.File
	defer func() {
		if prof != nil {
			pprof.StopCPUProfile()
			err = errors.Join(err, prof.Close())
		}
	}()
	tm := sess.Timing()
	fmt.Fprintf(o.Out, "ready passthrough=%v writeback=%v open=%s tree=%s mount=%s\n", sess.Passthrough(), sess.Writeback(), open, tm.Tree, tm.Mount)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go session.TrimMemory(ctx, 2*time.Second)
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(o.In)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return sess.Serve(ctx)
		case <-sess.Done():
			return sess.Close()
		case line, ok := <-lines:
			if !ok {
				return sess.Close()
			}
			cmd, arg, _ := strings.Cut(line, " ")
			var err error
			reply := "ok"
			switch {
			case cmd == "trace" && o.Trace:
				var b strings.Builder
				b.WriteString("ok")
				for _, c := range sess.Trace(true) {
					fmt.Fprintf(&b, " %s=%d/%d", c.Op, c.Count, c.Time.Nanoseconds())
				}
				reply = b.String()
			case cmd == "profile" && prof == nil:
				if prof, err = os.Create(arg); err == nil {
					if err = pprof.StartCPUProfile(prof); err != nil {
						prof.Close()
						prof = nil
					}
				}
			case cmd == "stop" && prof != nil:
				pprof.StopCPUProfile()
				err = prof.Close()
				prof = nil
			default:
				err = fmt.Errorf("unexpected command %q", line)
			}
			if err != nil {
				fmt.Fprintf(o.Out, "error: %v\n", err)
			} else {
				fmt.Fprintln(o.Out, reply)
			}
		}
	}
}

// newStrata is the strata contender: images loaded into a bench-private
// store at storeDir and mounted by a child process running self (a command
// line that runs Serve with its flags appended, e.g. "strata bench serve").
//
// name is Strata or StrataWriteback (the same store, the writeback cache
// instead of passthrough).
func newStrata(name, runDir, storeDir string, self []string, trace bool, dirs *dirCounter, logf func(string, ...any)) *contender {
	c := &contender{name: name}
	var flags []string
	if trace {
		flags = append(flags, "--trace")
	}
	if name == StrataWriteback {
		flags = append(flags, "--no-passthrough")
	}
	if len(self) == 0 {
		c.why = "no server command: run the harness as `strata bench`"
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		c.why = "no /dev/fuse"
	}
	var mu sync.Mutex
	loaded := map[string]bool{}
	c.prepare = func(ctx context.Context, img *ImageData) error {
		mu.Lock()
		defer mu.Unlock()
		if loaded[img.Name] {
			return nil
		}
		s, err := layerstore.Open(storeDir, nil)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := loadLayout(ctx, s, img.Layout, img.Name); err != nil {
			return fmt.Errorf("load %s: %w", img.Name, err)
		}
		// Build the merged tree now, so that mounts time loading it.
		_, tree, err := s.ImageTree(img.Name)
		if err != nil {
			return err
		}
		tree.Close()
		logf("strata: loaded %s (%d layers) in %s", img.Name, len(img.Tars), time.Since(t0).Round(time.Millisecond))
		loaded[img.Name] = true
		return nil
	}
	c.mount = func(ctx context.Context, img *ImageData) (*mounted, error) {
		d, err := dirs.next(runDir, name)
		if err != nil {
			return nil, err
		}
		mnt := filepath.Join(d, "mnt")
		sv, err := startServer(ctx, self, storeDir, img.Name, mnt, flags)
		if err != nil {
			os.RemoveAll(d)
			return nil, err
		}
		m := &mounted{root: mnt, note: sv.note}
		m.profile = func(file string) error { return sv.profile(file) }
		if trace {
			m.trace = func() (opTrace, error) { return sv.trace() } // sv is the server of the latest mount
		}
		m.phases = func() map[string]time.Duration { return sv.phases }
		m.unmount = func() error {
			err := sv.stop()
			return errors.Join(err, os.RemoveAll(d))
		}
		m.fresh = func(ctx context.Context) error {
			// A new session: a new, empty top layer.
			if err := sv.stop(); err != nil {
				return err
			}
			nsv, err := startServer(ctx, self, storeDir, img.Name, mnt, flags)
			if err != nil {
				return err
			}
			sv = nsv
			return nil
		}
		return m, nil
	}
	return c
}

// loadLayout loads the one image of an image archive or OCI layout under name.
func loadLayout(ctx context.Context, s *layerstore.Store, layout, name string) error {
	a, err := imagefmt.Open(layout)
	if err != nil {
		return err
	}
	defer a.Close()
	imgs := a.Images()
	if len(imgs) != 1 {
		return fmt.Errorf("%s holds %d images, want 1", layout, len(imgs))
	}
	imgs[0].Names = []string{name}
	_, err = transfer.Load(ctx, s, imgs, transfer.LoadOptions{})
	return err
}

// server is a running Serve child.
type server struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	mnt  string
	note string
	// phases are the server's own times to open the store, load the tree
	// and mount.
	phases map[string]time.Duration
	errb   *syncbuf.Buffer
	mu     sync.Mutex
	done   chan struct{}
	waitE  error
}

func startServer(ctx context.Context, self []string, store, image, mnt string, flags []string) (*server, error) {
	args := append(append([]string(nil), self[1:]...), "--store", store, "--image", image, "--dir", mnt)
	args = append(args, flags...)
	cmd := exec.Command(self[0], args...)
	// Its own process group: a terminal's ^C reaches the harness, which
	// unmounts in order, not the server in the middle of a workload.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	sv := &server{cmd: cmd, in: in, out: bufio.NewReader(outp), mnt: mnt, errb: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = sv.errb
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sv.waitE = cmd.Wait()
		close(sv.done)
	}()
	line, err := sv.readLine(ctx, 5*time.Minute)
	if err != nil || !strings.HasPrefix(line, "ready") {
		sv.stop()
		return nil, fmt.Errorf("strata server: %q: %w: %s", line, err, lastLine([]byte(sv.stderr())))
	}
	sv.phases = map[string]time.Duration{}
	for _, f := range strings.Fields(line)[1:] {
		k, v, _ := strings.Cut(f, "=")
		if d, err := time.ParseDuration(v); err == nil {
			sv.phases[k] = d
		} else {
			sv.note += " " + f
		}
	}
	sv.note = "strata server in a child process," + sv.note
	return sv, nil
}

func (sv *server) stderr() string { return sv.errb.String() }

func (sv *server) readLine(ctx context.Context, timeout time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := sv.out.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(timeout):
		return "", fmt.Errorf("no answer in %s", timeout)
	}
}

func (sv *server) profile(file string) error {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	cmd := "stop"
	if file != "" {
		cmd = "profile " + file
	}
	if _, err := fmt.Fprintln(sv.in, cmd); err != nil {
		return err
	}
	line, err := sv.readLine(context.Background(), time.Minute)
	if err != nil {
		return err
	}
	if line != "ok" {
		return errors.New(line)
	}
	return nil
}

// trace fetches (and resets) the server's request counts, and the
// nanoseconds it spent on them (none from a server older than that).
func (sv *server) trace() (opTrace, error) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if _, err := fmt.Fprintln(sv.in, "trace"); err != nil {
		return opTrace{}, err
	}
	line, err := sv.readLine(context.Background(), time.Minute)
	if err != nil {
		return opTrace{}, err
	}
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "ok" {
		return opTrace{}, errors.New(line)
	}
	out := opTrace{n: map[string]uint64{}, ns: map[string]uint64{}}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		cnt, ns, _ := strings.Cut(v, "/")
		var n, t uint64
		fmt.Sscan(cnt, &n)
		out.n[k] = n
		if ns != "" {
			fmt.Sscan(ns, &t)
			out.ns[k] = t
		}
	}
	return out, nil
}

// stop closes the server's input, which makes it unmount and exit. A
// server that does not exit in time is killed and its mount detached.
func (sv *server) stop() error {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.in.Close()
	select {
	case <-sv.done:
	case <-time.After(time.Minute):
		sv.cmd.Process.Kill()
		<-sv.done
		return errors.Join(fmt.Errorf("strata server did not exit: killed"), unmountDir(sv.mnt))
	}
	if sv.waitE != nil {
		return fmt.Errorf("strata server: %w: %s", sv.waitE, lastLine([]byte(sv.stderr())))
	}
	return nil
}
