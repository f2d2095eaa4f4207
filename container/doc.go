// Package container turns an image's config and a user's run options into an
// OCI runtime bundle and runs it under a real OCI runtime (runc): the floor
// that `strata run`, `exec` and build's RUN steps stand on.
//
// Spec builds the runtime spec docker would: docker's default capabilities,
// namespaces, masked and read-only /proc and /sys paths, /dev, /dev/pts,
// /dev/shm and /dev/mqueue, the image's Env, Entrypoint, Cmd, WorkingDir and
// User with the run options laid over them as docker lays them.
//
// Nothing in an image reaches the host: the container's /etc/passwd and
// /etc/group are read with openat2(RESOLVE_IN_ROOT), so an image whose
// /etc/passwd is a symlink to a host path reads its own file or none (and
// one that is not a regular file, a FIFO that would block the run, is
// refused), and the working directory is made inside the root the same way.
//
// Records keeps what strata knows of each container in
// <store>/containers/<id>/container.json (written whole, synced and renamed
// into place) beside its bundle, log and /etc files; names are files under
// .names/ taken under a lock file, so two processes never give one name to
// two containers. A container recorded as running whose supervisor process
// is gone reads as exited (State.Current). A run holds a flock of the
// container's run.lock from before its root is mounted to its end, and rm
// from before the runtime's delete to the record's removal: an rm racing a
// start fails (or, forced, kills it once it runs) or comes before it.
//
// A --rm container does not outlive the machine, so its record is renamed
// into place unsynced and its top layer is not kept: a kill of its process
// at any point leaves a record that ps -a shows (created, or exited 255)
// and rm -f removes, with a lease that dies with its server; a power loss
// at worst a torn record, which reads as a lost container that rm removes.
// A private network's namespace is held by a descriptor of the process that
// runs the container, so no crash leaves one behind.
//
// A container holds its image from the moment its record is made, in any
// state: ImageUsers lists the records for layerstore.Options.Users, which
// rmi and prune read, and Create makes the record inside Store.Use.
//
// Volumes live in <store>/volumes/NAME/_data. A volume's first fill from
// the image is made under a flock of NAME/.lock with a marker, NAME/.filling,
// made before the first file and removed after the last: a marker no lock
// holds is a killed fill, which the next fill (or ResetInterruptedFills,
// gc's) empties and redoes; InterruptedFills lists them for check. A fill
// is durable before its marker goes (the marker and the volume's own
// directory entries are synced before the first file is written, the fill is synced before the marker is removed: a few
// files and directories each by fsync, more by one syncfs of the volume's
// file system, which waits for every dirty page on it, not the fill's
// alone; and the removal is synced before the container starts), so after
// a power loss a volume without a marker holds every file of its fill,
// whole.
//
// A build's RUN container (RunOnce) has no supervisor to outlive its
// build: a watchdog process deletes it (runc delete --force) when the
// build's process ends, however it ends. stop and rm -f give a supervisor
// that does not record its container's exit (SIGSTOPped, hung)
// Config.StuckAfter, then kill it.
//
// A container's root is a fresh mount, with nothing in the kernel's caches:
// while runc starts, the container's program (and its ELF interpreter) is
// read ahead, the mountpoints runc would make are made, and /etc/passwd and
// /etc/group, which runc reads for the user, are read (warm.go), so that
// runc's own path to the exec sends the server few requests. runc takes
// the mountpoints as it finds them, as it does an image's own.
//
// Logs are docker's json-file format (logs.go).
//
// Exit statuses follow docker's: the command's own; ExitCannotInvoke (126)
// when the command exists but cannot run; ExitNotFound (127) when it does
// not exist; 128+N after signal N.
package container
