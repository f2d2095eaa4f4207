// Package mountserver is the process that serves mounts of images: what
// "strata mount" runs in the foreground, and what "strata mount -d" asks
// or starts in the background, shared by the strata CLI and strata-mount,
// the small binary that serves detached mounts when it is installed beside
// strata (Binary, Find).
//
// A Config names the store, the image, the mountpoint and the session's
// options; Args is it as strata-mount's command line and ParseArgs reads
// it back, and BoolFlags are the mount's flags for both binaries. Run
// checks the mountpoint, opens the store (OpenStore), starts a mount
// session (package session: lease, top layer, FUSE mount), says the mount
// is ready on its Report once SIGINT and SIGTERM are caught, and serves
// until the mount ends.
//
// Shared servers: RunShared (ServerArgs) is one process that serves many
// mounts of a store, each in goroutines of its own with what Run serves
// one with (a store handle each, with its asker's lock timeout), and one
// TrimMemory loop for them all. It is started in "/" with a minimal
// environment (it outlives its first asker, and serves others), but in
// that asker's cgroup and with its rlimits. It
// listens on a socket in the store's servers/ directory (ServersDir, mode
// 0700):
//
//	<root>/servers/<key>-<random>.sock   a server's socket (0600), one a process
//	<root>/servers/<key>-<random>.log    its own log (its stderr), beside it (LogOf);
//	                                     once it is gone, an empty one is removed
//	                                     and the newest 8 others a key are kept
//	<root>/servers/<key>.lock            flock: one client at a time starts a server
//
// where key (NSKey) names the mount namespace, root directory, user
// namespace, capabilities, no_new_privs, seccomp mode and LSM label and the
// strata executable of the clients it serves. A Client sends a request
// line (JSON: Protocol, store, image, absolute mountpoint, mount ID,
// BoolFlags, lock timeout) and the server, once it has read it, answers
// "taken", "full", "exiting" or "other: why" (a caller of another identity;
// nothing made: the client asks another, or starts one under the lock) or
// "error: ..." (final: another uid, a bad request), then
// "ready ID" (the client answers "ok") or "error: ...". The server serves
// only a peer of its own uid (SO_PEERCRED) of its own identity (all that
// the key names, read from /proc while a pidfd pins the peer), takes at most Config.MaxMounts mounts, and exits
// once it has had none for Config.Idle, removing its socket first (a
// client that connects meanwhile is told "exiting", or finds it gone, and
// asks again). A mount's own messages go to server.log in its mount
// directory.
//
// Crash guarantees: the session's. A kill at any point leaves at worst
// leases whose server is gone, which "strata mounts" shows stale or dead
// and umount, Reap or GC clean up; a killed shared server takes down its
// own mounts (at most MaxMounts) and no other server's, and leaves its
// socket, which the next client to start a server removes (a connection
// to it is refused). A client that gives up before the mount is ready
// (Ctrl-C: it closes its side) makes the server end the mount rather than
// leave it behind (Report, ErrGaveUp).
//
// strata runs only a strata-mount that root or strata's own owner put
// beside it (Find), since it may run it as root, and of its own build:
// Protocol is on the command line and in every request, and a server of
// another build refuses (IsRefusal); strata then serves the mount itself
// or starts a server of its own build.
//
// strata-mount links the store, the file system and the session and
// nothing of the CLI (no cobra, registry client, build or container code),
// so it starts faster and holds less memory: the Go runtime's own metadata
// grows with what package init allocated, and a server keeps it for its
// whole life.
package mountserver
