// Package mountserver is the process that serves one mount of an image:
// what "strata mount" runs in the foreground and what "strata mount -d"
// starts in the background, shared by the strata CLI and strata-mount, the
// small binary that serves detached mounts when it is installed beside
// strata (Binary, Find).
//
// A Config names the store, the image, the mountpoint and the session's
// options; Args is it as strata-mount's command line and ParseArgs reads
// it back, and BoolFlags are the mount's flags for both binaries. Run
// checks the mountpoint, opens the store (OpenStore), starts a mount
// session (package session: lease, top layer, FUSE mount), says the mount
// is ready on the report pipe (Reporter) once SIGINT and SIGTERM are
// caught, and serves until the mount ends. Its crash guarantees are the
// session's: a kill at any point leaves at worst a lease whose server is
// gone, which check reports and GC cleans up.
//
// strata runs only a strata-mount that root or strata's own owner put
// beside it (Find), since it may run it as root, and of its own build:
// Protocol is on the command line and a strata-mount of another refuses
// (IsRefusal); strata then serves the mount itself.
//
// strata-mount links the store, the file system and the session and
// nothing of the CLI (no cobra, registry client, build or container code),
// so each of a node's many mount servers starts faster and holds less
// memory: the Go runtime's own metadata grows with what package init
// allocated, and a server keeps it for its whole life.
package mountserver
