package mountserver

// Whose mounts a shared server may make: a mount is made in the server's
// mount namespace and seen from its root directory, so a server serves only
// callers of its own user, namespace and root.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// NSKey names the mount namespace and root directory of this process
// (with exe, the strata that asks, so that each installation uses servers
// it started): shared servers' sockets begin with it, so a caller only
// ever asks a server that mounts where it would.
func NSKey(exe string) (string, error) {
	ns, root, err := nsOf("self")
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%d:%d %d:%d %s", ns.Dev, ns.Ino, root.Dev, root.Ino, exe))
	return hex.EncodeToString(h[:6]), nil
}

// nsOf stats the mount namespace and root directory of process pid
// ("self" for this one).
func nsOf(pid string) (ns, root unix.Stat_t, err error) {
	if err = unix.Stat("/proc/"+pid+"/ns/mnt", &ns); err != nil {
		return ns, root, fmt.Errorf("mount namespace of pid %s: %w", pid, err)
	}
	if err = unix.Stat("/proc/"+pid+"/root", &root); err != nil {
		return ns, root, fmt.Errorf("root directory of pid %s: %w", pid, err)
	}
	return ns, root, nil
}

// peerCred is the user and process at the other end of c (SO_PEERCRED).
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// checkPeer refuses a caller of another user than this server's, or in
// another mount namespace or with another root directory (the mount would
// be made where it does not look).
func checkPeer(c *net.UnixConn) (pid int, err error) {
	cred, err := peerCred(c)
	if err != nil {
		return 0, err
	}
	if uid := os.Geteuid(); int(cred.Uid) != uid {
		return 0, fmt.Errorf("uid %d may not use the mount server of uid %d", cred.Uid, uid)
	}
	if cred.Pid <= 0 {
		return 0, fmt.Errorf("the caller's process is not visible here (another pid namespace)")
	}
	pns, proot, err := nsOf(strconv.Itoa(int(cred.Pid)))
	if err != nil {
		return 0, err
	}
	ns, root, err := nsOf("self")
	if err != nil {
		return 0, err
	}
	if pns.Dev != ns.Dev || pns.Ino != ns.Ino {
		return 0, fmt.Errorf("pid %d is in another mount namespace than this mount server: its mount would not be seen where it asked", cred.Pid)
	}
	if proot.Dev != root.Dev || proot.Ino != root.Ino {
		return 0, fmt.Errorf("pid %d has another root directory than this mount server: its mount would not be where it asked", cred.Pid)
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
