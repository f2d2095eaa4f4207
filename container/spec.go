package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/user"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-dev/strata/layerstore"
	"golang.org/x/sys/unix"
)

// ErrNoCommand: neither the image nor the run options name a command.
var ErrNoCommand = errors.New("no command specified")

// Network modes.
const (
	NetworkNone = "none" // a network namespace of its own with only lo (the default)
	NetworkHost = "host" // the host's network namespace
)

// DefaultPath is the PATH a container gets when its image sets none (docker's).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options are what a run says on top of the image's config. The zero value
// runs the image as its config says, as docker run IMAGE would, with no
// network but loopback.
type Options struct {
	// Cmd replaces the image's Cmd when non-empty.
	Cmd []string
	// Entrypoint, when non-nil, replaces the image's Entrypoint and drops the
	// image's Cmd (docker's rule); an empty slice clears the entrypoint.
	Entrypoint []string
	// Env entries (KEY=VALUE, or KEY alone to take the value from
	// HostEnv) override the image's by key.
	Env []string
	// HostEnv looks up KEY-only Env entries. Default: os.LookupEnv.
	HostEnv func(string) (string, bool) `json:"-"`
	// WorkingDir replaces the image's; made inside the root when missing.
	WorkingDir string
	// User replaces the image's: user, uid, user:group or uid:gid,
	// resolved against the container's own /etc/passwd and /etc/group.
	User string
	// Hostname defaults to the first 12 characters of the container ID.
	Hostname string
	// Tty gives the process a terminal (and TERM=xterm).
	Tty bool
	// ReadOnly mounts the root file system read-only.
	ReadOnly bool
	// Network is NetworkNone (the default here), NetworkHost or
	// NetworkPrivate, which needs NetNSPath.
	Network string
	// NetNSPath is the network namespace of a private network.
	NetNSPath string `json:"-"`
	// Mounts are added after the defaults (volumes, binds).
	Mounts []specs.Mount
	// Annotations are copied into the spec (labels, the image name).
	Annotations map[string]string
	// Init runs an init process (tini or catatonit, static binaries from
	// the host, at /sbin/docker-init as docker puts its own) as PID 1 that
	// passes signals on and reaps zombies.
	Init bool
	// InitPath is the init binary. Default: the first of InitBinaries found.
	InitPath string `json:",omitempty"`
}

// InitBinaries are the static init programs --init looks for (Debian's
// tini and catatonit packages).
var InitBinaries = []string{"/usr/bin/tini-static", "/usr/bin/catatonit", "/usr/libexec/podman/catatonit"}

// initPath is the init binary o asks for.
func initPath(o Options) (string, error) {
	if o.InitPath != "" {
		return o.InitPath, nil
	}
	for _, p := range InitBinaries {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("--init: no static init program found (install Debian's tini or catatonit): looked for %s", strings.Join(InitBinaries, ", "))
}

// Spec returns the runtime spec that runs the image with config cfg, whose
// root file system is at rootfs, as container id. It reads the container's
// /etc/passwd and /etc/group (inside rootfs) to resolve the user, makes the
// working directory when it is missing, and writes the container's
// /etc/hostname, /etc/hosts and /etc/resolv.conf into etcDir, from where
// they are bind-mounted.
func Spec(id, rootfs, etcDir string, cfg ocispec.ImageConfig, o Options) (*specs.Spec, error) {
	args := slices.Clone(cfg.Entrypoint)
	cmd := cfg.Cmd
	if o.Entrypoint != nil {
		args = slices.Clone(o.Entrypoint)
		cmd = nil
	}
	if len(o.Cmd) > 0 {
		cmd = o.Cmd
	}
	args = append(args, cmd...)
	if len(args) == 0 {
		return nil, ErrNoCommand
	}
	var initMount []specs.Mount
	if o.Init {
		p, err := initPath(o)
		if err != nil {
			return nil, err
		}
		args = append([]string{"/sbin/docker-init", "--"}, args...)
		initMount = []specs.Mount{{Destination: "/sbin/docker-init", Type: "bind", Source: p, Options: []string{"bind", "ro"}}}
	}

	hostname := o.Hostname
	if hostname == "" {
		hostname = id
		if len(hostname) > 12 {
			hostname = hostname[:12]
		}
	}
	userSpec := cfg.User
	if o.User != "" {
		userSpec = o.User
	}
	eu, err := execUser(rootfs, userSpec)
	if err != nil {
		return nil, err
	}
	env, err := mergeEnv(cfg.Env, o, hostname, eu.Home)
	if err != nil {
		return nil, err
	}
	cwd := cfg.WorkingDir
	if o.WorkingDir != "" {
		cwd = o.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !filepath.IsAbs(cwd) {
		return nil, fmt.Errorf("working directory %q is not an absolute path", cwd)
	}
	if err := mkdirAllInRoot(rootfs, cwd); err != nil {
		return nil, err
	}
	etc, err := writeEtc(etcDir, hostname, o.Network)
	if err != nil {
		return nil, err
	}

	caps := slices.Clone(defaultCaps)
	s := &specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{
			Terminal: o.Tty,
			User:     specUser(eu),
			Args:     args,
			Env:      env,
			Cwd:      cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
		},
		Root:        &specs.Root{Path: rootfs, Readonly: o.ReadOnly},
		Hostname:    hostname,
		Mounts:      append(append(defaultMounts(), initMount...), containerMounts(etc, o.Mounts)...),
		Annotations: o.Annotations,
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
	}
	switch o.Network {
	case "", NetworkNone:
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	case NetworkPrivate:
		if o.NetNSPath == "" {
			return nil, fmt.Errorf("network %s: no network namespace made for it", NetworkPrivate)
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: o.NetNSPath})
	case NetworkHost:
	default:
		return nil, fmt.Errorf("network %q: want %s, %s or %s", o.Network, NetworkPrivate, NetworkNone, NetworkHost)
	}
	return s, nil
}

// execUser resolves spec ("" is root) against the container's own passwd
// and group files.
func execUser(rootfs, spec string) (*user.ExecUser, error) {
	defaults := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	passwd, err := openUserDB(rootfs, "/etc/passwd")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	group, gerr := openUserDB(rootfs, "/etc/group")
	if gerr != nil && !errors.Is(gerr, os.ErrNotExist) {
		if passwd != nil {
			passwd.Close()
		}
		return nil, gerr
	}
	// user.GetExecUser wants nil readers for missing files, not nil *os.File.
	var pr, gr io.Reader
	if passwd != nil {
		defer passwd.Close()
		pr = io.LimitReader(passwd, userDBMax)
	}
	if group != nil {
		defer group.Close()
		gr = io.LimitReader(group, userDBMax)
	}
	eu, err := user.GetExecUser(spec, defaults, pr, gr)
	if err != nil {
		return nil, err // "unable to find user NAME: no matching entries in passwd file"
	}
	return eu, nil
}

// userDBMax is the largest /etc/passwd or /etc/group read (a few hundred
// bytes in most images, ~100 KiB in the largest seen).
const userDBMax = 16 << 20

// openUserDB opens the image's name (/etc/passwd or /etc/group) inside
// rootfs for reading, refusing what is not a regular file (a FIFO would
// block the open and the run for good, a device's open may act) or is
// larger than userDBMax, with an error naming it. The file is looked at
// through an O_PATH descriptor first, which opens nothing, then opened
// non-blocking and looked at again: what changed in between is refused.
func openUserDB(rootfs, name string) (*os.File, error) {
	probe, err := openInRoot(rootfs, name, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer probe.Close()
	var want unix.Stat_t
	if err := userDBFile(probe, name, &want); err != nil {
		return nil, err
	}
	f, err := openInRoot(rootfs, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, err
	}
	var got unix.Stat_t
	if err := userDBFile(f, name, &got); err != nil {
		f.Close()
		return nil, err
	}
	if got.Dev != want.Dev || got.Ino != want.Ino {
		f.Close()
		return nil, fmt.Errorf("image's %s: replaced while it was opened: %w", name, layerstore.ErrInvalid)
	}
	return f, nil
}

// userDBFile fstats f into st and checks it is a regular file of at most
// userDBMax bytes.
func userDBFile(f *os.File, name string, st *unix.Stat_t) error {
	if err := unix.Fstat(int(f.Fd()), st); err != nil {
		return &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("image's %s: a %s, not a regular file: %w", name, fileKind(st.Mode), layerstore.ErrInvalid)
	}
	if st.Size > userDBMax {
		return fmt.Errorf("image's %s: %d bytes, more than %d: %w", name, st.Size, userDBMax, layerstore.ErrInvalid)
	}
	return nil
}

// fileKind names the type in mode.
func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	}
	return "special file"
}

// specUser is the process user of eu; docker lists the primary group among
// the supplementary ones too.
func specUser(eu *user.ExecUser) specs.User {
	gids := []uint32{uint32(eu.Gid)}
	for _, g := range eu.Sgids {
		gids = append(gids, uint32(g))
	}
	return specs.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid), AdditionalGids: gids}
}

// mergeEnv lays the run's Env over the image's by key and adds what docker
// adds: PATH when missing, HOSTNAME, HOME from passwd, TERM with a tty.
func mergeEnv(image []string, o Options, hostname, home string) ([]string, error) {
	lookup := o.HostEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var keys []string
	vals := map[string]string{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = kv
	}
	set("PATH=" + DefaultPath)
	set("HOSTNAME=" + hostname)
	for _, kv := range image {
		set(kv)
	}
	for _, kv := range o.Env {
		k, _, hasValue := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("invalid environment variable %q: no name", kv)
		}
		if !hasValue {
			v, ok := lookup(k)
			if !ok {
				continue // docker drops a KEY the host does not have
			}
			kv = k + "=" + v
		}
		set(kv)
	}
	if o.Tty {
		if _, ok := vals["TERM"]; !ok {
			set("TERM=xterm")
		}
	}
	if _, ok := vals["HOME"]; !ok {
		set("HOME=" + home)
	}
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, vals[k])
	}
	return env, nil
}

// etcFiles are the files a container's /etc gets from its host side.
type etcFiles struct{ hostname, hosts, resolv string }

// writeEtc writes /etc/hostname, /etc/hosts and /etc/resolv.conf for the
// container into dir, as docker writes them into its container directory.
func writeEtc(dir, hostname, network string) (etcFiles, error) {
	e := etcFiles{
		hostname: filepath.Join(dir, "hostname"),
		hosts:    filepath.Join(dir, "hosts"),
		resolv:   filepath.Join(dir, "resolv.conf"),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return e, err
	}
	// What docker 20.10 writes for a container without a network of its own.
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	if network == NetworkHost {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
	}
	resolv := ""
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		resolv = string(b)
	}
	if network == NetworkPrivate { // slirp4netns's address and DNS forwarder
		hosts += privateAddr + "\t" + hostname + "\n"
		resolv = "nameserver " + privateDNS + "\n"
	}
	for name, body := range map[string]string{e.hostname: hostname + "\n", e.hosts: hosts, e.resolv: resolv} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			return e, err
		}
	}
	return e, nil
}

// docker's default capabilities.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// docker's masked and read-only paths: kernel interfaces a container must not
// read or change.
var (
	maskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// containerMounts are the container's /etc files and the mounts given
// (volumes, binds), parents before what they hold, as docker sorts them: a
// volume at /etc still gets the container's /etc/hosts on top of it, and a
// bind given at /etc/hosts replaces strata's.
func containerMounts(e etcFiles, given []specs.Mount) []specs.Mount {
	ms := append([]specs.Mount{
		{Destination: "/etc/hostname", Type: "bind", Source: e.hostname, Options: []string{"rbind", "rprivate"}},
		{Destination: "/etc/hosts", Type: "bind", Source: e.hosts, Options: []string{"rbind", "rprivate"}},
		{Destination: "/etc/resolv.conf", Type: "bind", Source: e.resolv, Options: []string{"rbind", "rprivate"}},
	}, given...)
	depth := func(m specs.Mount) int { return strings.Count(filepath.Clean(m.Destination), "/") }
	slices.SortStableFunc(ms, func(a, b specs.Mount) int { return depth(a) - depth(b) })
	return ms
}

// defaultMounts are docker's.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	}
}
