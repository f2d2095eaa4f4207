package mountserver

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/session"
)

// Protocol is the version of what strata and its mount servers say to
// each other (Config's flags, the report lines, a shared server's requests
// and replies). Bump it whenever any changes: strata passes it on the
// command line and in every request, and a server of another build refuses
// to serve (strata then serves the mount itself, or starts a server of its
// own build).
const Protocol = 3

// Config is what a mount server serves: the store, the mount, and how to
// report. Args and ParseArgs are its command line.
type Config struct {
	Root        string
	LockTimeout time.Duration
	Debug       bool
	Force       bool // mount on a dir that holds files or is a mount point
	Ref, Dir    string
	Session     session.Options // ID, ReadOnly, Suid, Dev, AllowOther, NoPassthrough, NoWriteback
	ReadyFd     int             // where to report "ready ID" or "error: ..." (0: nowhere)

	// A shared server (RunShared) listens on Listen, a socket in the
	// store's servers/ directory, and serves up to MaxMounts mounts at
	// once; it then has no Ref, Dir or Session.
	Listen    string
	MaxMounts int
	Idle      time.Duration // how long it waits for a mount before it exits (default DefaultIdle)

	// Not on the command line: strata's own store options.
	Users  func() ([]layerstore.ImageUser, error) // a mount server removes no image; nil is fine
	Stderr io.Writer                              // for the busy sentence; nil: os.Stderr
}

// A BoolFlag is one of the mount's boolean flags, which "strata mount"
// and strata-mount both take.
type BoolFlag struct {
	Name, Usage string
	Default     bool
	Field       func(*Config) *bool
}

// BoolFlags are the mount's boolean flags, in one place for the CLI's
// flags, Args and ParseArgs.
var BoolFlags = []BoolFlag{
	{"read-only", "mount read-only, without a top layer", false, func(c *Config) *bool { return &c.Session.ReadOnly }},
	{"suid", "honour the image's setuid and setgid bits (any user who can reach the mount can run its setuid-root programs)", false, func(c *Config) *bool { return &c.Session.Suid }},
	{"dev", "allow access to the image's device nodes (any user who can reach the mount can open them)", false, func(c *Config) *bool { return &c.Session.Dev }},
	{"no-passthrough", "serve every read and write in the server, even where FUSE passthrough is available (a writable mount then has the writeback cache)", false, func(c *Config) *bool { return &c.Session.NoPassthrough }},
	{"no-writeback", "never use the writeback cache (with --no-passthrough, every write reaches the server as it happens)", false, func(c *Config) *bool { return &c.Session.NoWriteback }},
	{"allow-other", "let users other than the one mounting use the mount", true, func(c *Config) *bool { return &c.Session.AllowOther }},
	{"force", "mount even on a directory that is not empty or is already a mount point (hiding what is there)", false, func(c *Config) *bool { return &c.Force }},
}

// BindBools binds BoolFlags to c's fields with boolVar (flag.FlagSet's or
// pflag.FlagSet's BoolVar).
func (c *Config) BindBools(boolVar func(p *bool, name string, value bool, usage string)) {
	for _, b := range BoolFlags {
		boolVar(b.Field(c), b.Name, b.Default, b.Usage)
	}
}

// Args is c as a mount server's command line (ParseArgs reads it back),
// with --protocol=Protocol. strata's own "mount" takes it too.
func (c Config) Args() []string {
	// --ready-fd first: a strata-mount that cannot parse what follows
	// still reports why.
	a := []string{"--ready-fd", strconv.Itoa(c.ReadyFd), "--root", c.Root,
		"--lock-timeout", strconv.Itoa(int(c.LockTimeout / time.Second)),
		"--protocol=" + strconv.Itoa(Protocol), "--mount-id", c.Session.ID}
	if c.Debug {
		a = append(a, "--debug")
	}
	for _, b := range BoolFlags {
		a = append(a, "--"+b.Name+"="+strconv.FormatBool(*b.Field(&c)))
	}
	return append(a, "--", c.Ref, c.Dir)
}

// ServerArgs is c as a shared mount server's command line (ParseArgs reads
// it back): the store, the socket and how many mounts it takes.
func (c Config) ServerArgs() []string {
	return []string{"--ready-fd", strconv.Itoa(c.ReadyFd), "--root", c.Root,
		"--lock-timeout", strconv.Itoa(int(c.LockTimeout / time.Second)),
		"--protocol=" + strconv.Itoa(Protocol),
		"--listen", c.Listen, "--max-mounts", strconv.Itoa(c.MaxMounts), "--idle", c.Idle.String()}
}

// ParseArgs reads strata-mount's command line (Args, or ServerArgs for a
// shared server). Its errors are one line, for the report.
func ParseArgs(args []string) (Config, error) {
	var c Config
	f := flag.NewFlagSet(Binary, flag.ContinueOnError)
	f.SetOutput(io.Discard)
	f.StringVar(&c.Root, "root", layerstore.DefaultRoot(), "store directory")
	lockTimeout := f.Int("lock-timeout", 30, "seconds to wait for another strata process to release the store")
	f.BoolVar(&c.Debug, "debug", false, "log debug messages (and every FUSE request) to stderr")
	f.BoolVar(&c.Debug, "D", false, "shorthand for --debug")
	protocol := f.Int("protocol", 0, "the protocol strata speaks (mountserver.Protocol)")
	f.StringVar(&c.Session.ID, "mount-id", "", "mount ID (default: a new one)")
	f.IntVar(&c.ReadyFd, "ready-fd", 0, "file descriptor to report \"ready ID\" or \"error: ...\" on")
	f.StringVar(&c.Listen, "listen", "", "serve many mounts, as strata asks for them on this socket")
	f.IntVar(&c.MaxMounts, "max-mounts", DefaultMaxMounts, "with --listen: serve at most this many mounts at once")
	f.DurationVar(&c.Idle, "idle", DefaultIdle, "with --listen: exit once no mount has been served for this long")
	c.BindBools(f.BoolVar)
	if err := f.Parse(args); err != nil {
		return c, fmt.Errorf("%s: %v (it takes what strata mount -d passes; see \"strata mount --help\")", Binary, err)
	}
	c.LockTimeout = time.Duration(*lockTimeout) * time.Second
	if err := CheckProtocol(*protocol); err != nil {
		return c, err
	}
	if c.Listen != "" {
		if f.NArg() != 0 || c.MaxMounts < 1 {
			return c, fmt.Errorf("%s: --listen takes no IMAGE DIR, and --max-mounts at least 1 (got %q, %d)", Binary, f.Args(), c.MaxMounts)
		}
		return c, nil
	}
	c.MaxMounts, c.Idle = 0, 0
	if f.NArg() != 2 {
		return c, fmt.Errorf("%s: want IMAGE DIR, got %q (see \"strata mount --help\")", Binary, f.Args())
	}
	c.Ref, c.Dir = f.Arg(0), f.Arg(1)
	return c, nil
}

// refusal begins the error CheckProtocol returns, which strata knows.
const refusal = "mount server protocol mismatch: "

// CheckProtocol refuses a caller that speaks another protocol.
func CheckProtocol(p int) error {
	if p == Protocol {
		return nil
	}
	return fmt.Errorf("%sthis %s speaks protocol %d, the strata that started it protocol %d: they are from different builds; reinstall both with go install ./cmd/...", refusal, Binary, Protocol, p)
}

// IsRefusal says whether a server's report line is CheckProtocol's
// refusal, or what a strata-mount of an older build says of a flag it does
// not know (one from before --protocol prints it on stderr, so the error
// of a server that ended without a report counts too).
func IsRefusal(line string, ended error) bool {
	const unknown = "flag provided but not defined: -"
	return strings.HasPrefix(line, "error: "+refusal) || strings.HasPrefix(line, "error: ") && strings.Contains(line, unknown) ||
		line == "" && ended != nil && strings.Contains(ended.Error(), unknown)
}
