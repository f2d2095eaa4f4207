package container

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/strata-dev/strata/internal/syncbuf"
	"golang.org/x/sys/unix"
)

// NetworkPrivate is a network namespace of the container's own with
// outbound access through slirp4netns (a user-space network stack Debian
// packages) and ports published on the host: the default, as docker's
// bridge is.
const NetworkPrivate = "private"

// Addresses inside a private network (slirp4netns's defaults).
const (
	privateAddr = "10.0.2.100"
	privateDNS  = "10.0.2.3"
)

// Port publishes a container port on a host port (-p).
type Port struct {
	HostIP        string `json:"hostIP"`
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Proto         string `json:"proto"` // tcp or udp
}

func (p Port) String() string {
	return fmt.Sprintf("%s->%d/%s", net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort)), p.ContainerPort, p.Proto)
}

// ParsePublish reads -p [HOST-IP:][HOST-PORT:]CONTAINER-PORT[/tcp|udp]. The
// host address defaults to 127.0.0.1 (reachable from this machine only);
// a host port of 0 or none is picked free when the container starts.
func ParsePublish(s string) (Port, error) {
	bad := func(why string) (Port, error) {
		return Port{}, fmt.Errorf("invalid publish specification %q: %s", s, why)
	}
	p := Port{HostIP: "127.0.0.1", Proto: "tcp"}
	spec := s
	if i := strings.LastIndexByte(spec, '/'); i >= 0 {
		p.Proto, spec = spec[i+1:], spec[:i]
		if p.Proto != "tcp" && p.Proto != "udp" {
			return bad("protocol must be tcp or udp")
		}
	}
	var host, hostPort, ctr string
	if strings.HasPrefix(spec, "[") { // [IPv6]:HOST-PORT:CTR
		end := strings.Index(spec, "]:")
		if end < 0 {
			return bad("unterminated IPv6 address")
		}
		host, spec = spec[1:end], spec[end+2:]
	}
	parts := strings.Split(spec, ":")
	switch {
	case host != "" && len(parts) == 2:
		hostPort, ctr = parts[0], parts[1]
	case host == "" && len(parts) == 1:
		ctr = parts[0]
	case host == "" && len(parts) == 2:
		hostPort, ctr = parts[0], parts[1]
	case host == "" && len(parts) == 3:
		host, hostPort, ctr = parts[0], parts[1], parts[2]
	default:
		return bad("want [HOST-IP:][HOST-PORT:]CONTAINER-PORT[/PROTO]")
	}
	if host != "" {
		if net.ParseIP(host) == nil {
			return bad(fmt.Sprintf("%q is not an IP address", host))
		}
		p.HostIP = host
	}
	var err error
	if p.ContainerPort, err = strconv.Atoi(ctr); err != nil || p.ContainerPort < 1 || p.ContainerPort > 65535 {
		return bad(fmt.Sprintf("container port %q is not a port number", ctr))
	}
	if hostPort != "" {
		if p.HostPort, err = strconv.Atoi(hostPort); err != nil || p.HostPort < 0 || p.HostPort > 65535 {
			return bad(fmt.Sprintf("host port %q is not a port number", hostPort))
		}
	}
	return p, nil
}

// privateNet is a private network: its namespace, held by a descriptor of
// this process (it lives as long as the container or this process, and no
// crash leaves it behind), and the slirp4netns that serves it.
type privateNet struct {
	ns    *os.File
	path  string // the namespace for slirp4netns and the runtime: /proc/PID/fd/N
	api   string // slirp4netns's API socket
	slirp *exec.Cmd
	ready *os.File // slirp4netns writes '1' here once it is up
	exit  *os.File // slirp4netns ends when this closes (or we die)
	log   *syncbuf.Buffer
	// published: ports were asked for, so stop waits until they are free.
	published bool
}

// apiDir holds the API sockets of the slirp4netns processes.
const apiDir = "/run/strata/net"

// netnsName was container id's network namespace under /run/netns, where
// strata used to keep them: removeNetns deletes one a crash left there.
func netnsName(id string) string { return "strata-" + id[:12] }

// startPrivateNet makes a network namespace for container id and starts
// slirp4netns in it; up waits until it serves. The two are apart so that
// the caller mounts the container's root while slirp4netns comes up.
func startPrivateNet(id string) (*privateNet, error) {
	slirp, err := exec.LookPath("slirp4netns")
	if err != nil {
		return nil, fmt.Errorf("network %s needs slirp4netns (apt-get install slirp4netns), or use --network none or host: %w", NetworkPrivate, err)
	}
	n := &privateNet{api: filepath.Join(apiDir, netnsName(id)+".sock"), log: &syncbuf.Buffer{}}
	if n.ns, err = newNetns(); err != nil {
		return nil, err
	}
	n.path = fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), n.ns.Fd())
	fail := func(err error) (*privateNet, error) { return nil, errors.Join(err, n.stop()) }
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	n.ready = readyR
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return fail(err)
	}
	n.exit = exitW
	// A socket's path must fit in 108 bytes: not under the store.
	if err := os.MkdirAll(apiDir, 0o700); err != nil {
		readyW.Close()
		exitR.Close()
		return fail(err)
	}
	_ = os.Remove(n.api)
	n.slirp = exec.Command(slirp, "--configure", "--mtu=65520", "--disable-host-loopback",
		"--netns-type=path", "--api-socket", n.api, "--ready-fd=3", "--exit-fd=4", n.path, "tap0")
	n.slirp.ExtraFiles = []*os.File{readyW, exitR}
	n.slirp.Stdout, n.slirp.Stderr = n.log, n.log
	err = n.slirp.Start()
	readyW.Close()
	exitR.Close()
	if err != nil {
		n.slirp = nil
		return fail(err)
	}
	return n, nil
}

// up waits until slirp4netns serves the namespace, then publishes ports (a
// host port of 0 picked now, and written back into ports).
func (n *privateNet) up(ports []Port) error {
	b, _ := bufio.NewReader(n.ready).ReadByte()
	n.ready.Close()
	n.ready = nil
	if b != '1' {
		n.exit.Close()
		n.slirp.Wait()
		n.slirp = nil
		return fmt.Errorf("slirp4netns did not come up: %s", strings.TrimSpace(n.log.String()))
	}
	for i := range ports {
		n.published = true
		if err := publish(n.api, &ports[i]); err != nil {
			return err
		}
	}
	return nil
}

// newNetns makes a network namespace and returns a descriptor that holds it.
// A thread of its own enters it and ends with it (never handed back to Go).
func newNetns() (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("new network namespace: %w", err)}
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

// publish asks slirp4netns (its API socket at api) to forward p.
func publish(api string, p *Port) error {
	if p.HostPort == 0 {
		port, err := freePort(p.HostIP, p.Proto)
		if err != nil {
			return err
		}
		p.HostPort = port
	}
	conn, err := net.DialTimeout("unix", api, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	req := map[string]any{"execute": "add_hostfwd", "arguments": map[string]any{
		"proto": p.Proto, "host_addr": p.HostIP, "host_port": p.HostPort, "guest_addr": privateAddr, "guest_port": p.ContainerPort,
	}}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return err
	}
	var resp struct {
		Error *struct{ Desc string } `json:"error"`
	}
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return fmt.Errorf("publish %s: slirp4netns: %w", p, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("bind for %s failed: port is already allocated or not available (%s)", net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort)), resp.Error.Desc)
	}
	return nil
}

// freePort is a port free on host now.
func freePort(host, proto string) (int, error) {
	addr := net.JoinHostPort(host, "0")
	if proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// stop ends slirp4netns and lets go of the namespace.
func (n *privateNet) stop() error {
	if n == nil {
		return nil
	}
	if n.ready != nil {
		n.ready.Close()
	}
	var err error
	if n.ns != nil {
		err = n.ns.Close()
		n.ns = nil
	}
	if n.exit != nil {
		n.exit.Close()
	}
	if n.slirp != nil && n.slirp.Process != nil {
		done := make(chan struct{})
		go func() { n.slirp.Wait(); close(done) }()
		if !n.published {
			// Its exit takes the tap device down, which costs the kernel
			// tens of milliseconds (an RCU grace period): nothing waits
			// for that unless a published port must be free on return.
			// The goroutine reaps it; if this process ends first, init does.
			_ = os.Remove(n.api)
			return err
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			n.slirp.Process.Kill()
			<-done
		}
	}
	_ = os.Remove(n.api)
	return err
}

// removeNetns deletes network namespace name if it is there.
func removeNetns(name string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns delete %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
