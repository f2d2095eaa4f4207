package mountserver

// Whose mounts a shared server may make: a mount is made in the server's
// mount namespace and seen from its root directory, with the server's
// privilege, so a server serves only callers of its own user, namespace,
// root and privilege.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NSKey names what a mount made for this process depends on (with exe,
// the strata that asks, so that each installation uses servers it
// started): its identity (identityOf). Shared servers' sockets begin
// with it, so a caller only ever asks a server that mounts where it would
// and may do no more than it could itself; one of less privilege starts
// a server of its own, which can do no more than it.
func NSKey(exe string) (string, error) {
	id, err := identityOf("self")
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s %s", id, exe))
	return hex.EncodeToString(h[:6]), nil
}

// identity is what a process's mounts depend on beside its uid: the mount
// namespace and root directory they are made in and seen from, and what
// the process may do: its user namespace, capabilities, no_new_privs,
// seccomp mode and LSM label. A server serves only a caller whose
// identity is its own: a root stripped of CAP_SYS_ADMIN, or root of a
// user namespace, must not have a full root make a --suid --dev mount for
// it.
type identity struct {
	MountNS, Root, UserNS [2]uint64 // dev, ino
	CapEff, CapBnd        string
	NoNewPrivs, Seccomp   string
	Label                 string // /proc/PID/attr/current, where there is an LSM
}

func (id identity) String() string {
	return fmt.Sprintf("%v %v %v %s %s %s %s %q", id.MountNS, id.Root, id.UserNS, id.CapEff, id.CapBnd, id.NoNewPrivs, id.Seccomp, id.Label)
}

// identityOf reads the identity of process pid ("self" for this one).
func identityOf(pid string) (id identity, err error) {
	for _, f := range []struct {
		name string
		to   *[2]uint64
		what string
	}{{"ns/mnt", &id.MountNS, "mount namespace"}, {"root", &id.Root, "root directory"}, {"ns/user", &id.UserNS, "user namespace"}} {
		var st unix.Stat_t
		if err := unix.Stat("/proc/"+pid+"/"+f.name, &st); err != nil {
			return id, fmt.Errorf("%s of pid %s: %w", f.what, pid, err)
		}
		*f.to = [2]uint64{st.Dev, st.Ino}
	}
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return id, fmt.Errorf("status of pid %s: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "CapEff":
			id.CapEff = v
		case "CapBnd":
			id.CapBnd = v
		case "NoNewPrivs":
			id.NoNewPrivs = v
		case "Seccomp":
			id.Seccomp = v
		}
	}
	if id.CapEff == "" || id.CapBnd == "" {
		return id, fmt.Errorf("status of pid %s: no CapEff or CapBnd", pid)
	}
	if l, err := os.ReadFile("/proc/" + pid + "/attr/current"); err == nil { // EINVAL: no LSM
		id.Label = strings.TrimRight(string(l), "\x00\n")
	}
	return id, nil
}

// differ says how the identity of peer pid differs from this server's, or
// "" if it does not.
func (id identity) differ(self identity, pid int) string {
	switch {
	case id.MountNS != self.MountNS:
		return fmt.Sprintf("pid %d is in another mount namespace than this mount server: its mount would not be seen where it asked", pid)
	case id.Root != self.Root:
		return fmt.Sprintf("pid %d has another root directory than this mount server: its mount would not be where it asked", pid)
	case id.UserNS != self.UserNS:
		return fmt.Sprintf("pid %d is in another user namespace than this mount server: it may not mount what this server may", pid)
	case id.CapEff != self.CapEff || id.CapBnd != self.CapBnd:
		return fmt.Sprintf("pid %d has other capabilities (effective %s, bounding %s) than this mount server (%s, %s)", pid, id.CapEff, id.CapBnd, self.CapEff, self.CapBnd)
	case id.NoNewPrivs != self.NoNewPrivs || id.Seccomp != self.Seccomp:
		return fmt.Sprintf("pid %d has another no_new_privs or seccomp mode (%s, %s) than this mount server (%s, %s)", pid, id.NoNewPrivs, id.Seccomp, self.NoNewPrivs, self.Seccomp)
	case id.Label != self.Label:
		return fmt.Sprintf("pid %d has another security label (%q) than this mount server (%q)", pid, id.Label, self.Label)
	}
	return ""
}

// peerCred is the user and process at the other end of c (SO_PEERCRED),
// and a pidfd of that process (SO_PEERPIDFD, Linux 6.5; -1 before), which
// the caller closes.
func peerCred(c *net.UnixConn) (*unix.Ucred, int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, -1, err
	}
	var cred *unix.Ucred
	var cerr error
	pidfd := -1
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			pidfd = n
		}
	}); err != nil {
		return nil, -1, err
	}
	if cerr != nil && pidfd >= 0 {
		unix.Close(pidfd)
		pidfd = -1
	}
	return cred, pidfd, cerr
}

// errOther is a caller this server will not serve because it differs in
// what NSKey holds: one of its own would, so it asks another server.
var errOther = errors.New("not this mount server's caller")

// checkPeer refuses a caller of another user than this server's, or of
// another identity (identityOf): another mount namespace or root (the
// mount would be made where it does not look), or less privilege (the
// server would mount what the caller may not). The caller's /proc is read
// while a pidfd pins it: a process still alive after the reads is the one
// that connected, not another that got its pid.
func checkPeer(c *net.UnixConn) (pid int, err error) {
	cred, pidfd, err := peerCred(c)
	if err != nil {
		return 0, err
	}
	if pidfd < 0 && cred.Pid > 0 {
		pidfd, _ = unix.PidfdOpen(int(cred.Pid), 0) // older kernels: pinned from here on
	}
	if pidfd >= 0 {
		defer unix.Close(pidfd)
	}
	if uid := os.Geteuid(); int(cred.Uid) != uid {
		return 0, fmt.Errorf("uid %d may not use the mount server of uid %d", cred.Uid, uid)
	}
	if cred.Pid <= 0 {
		return 0, fmt.Errorf("the caller's process is not visible here (another pid namespace)")
	}
	if pidfd < 0 {
		return 0, fmt.Errorf("pid %d: no pidfd of the caller", cred.Pid)
	}
	pi, err := identityOf(strconv.Itoa(int(cred.Pid)))
	if err != nil {
		return 0, err
	}
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return 0, fmt.Errorf("pid %d exited while it asked: %w", cred.Pid, err)
	}
	self, err := identityOf("self")
	if err != nil {
		return 0, err
	}
	if why := pi.differ(self, int(cred.Pid)); why != "" {
		return 0, fmt.Errorf("%w: %s", errOther, why)
	}
	return int(cred.Pid), nil
}

// dialUnix connects to the socket at path, through /proc/self/fd for a
// path too long for a socket address.
func dialUnix(path string) (*net.UnixConn, error) {
	var c *net.UnixConn
	err := viaDir(path, func(p string) (err error) {
		c, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	return c, err
}

// listenUnix listens on a new socket at path (mode 0600), which the caller
// removes.
func listenUnix(path string) (*net.UnixListener, error) {
	var l *net.UnixListener
	err := viaDir(path, func(p string) (err error) {
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil { // the directory is 0700 too
		return nil, errors.Join(err, l.Close(), os.Remove(path))
	}
	return l, nil
}

// maxSockPath is what fits in a socket address's sun_path.
const maxSockPath = 107

// viaDir calls fn with path, or with a short name for it through an open
// descriptor of its directory where path is too long for a socket address.
func viaDir(path string, fn func(p string) error) error {
	if len(path) <= maxSockPath {
		return fn(path)
	}
	dir, base := filepath.Split(path)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return fn("/proc/self/fd/" + strconv.Itoa(fd) + "/" + base)
}
