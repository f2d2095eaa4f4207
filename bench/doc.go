// Package bench is strata's benchmark harness: it measures a strata mount
// beside the things it competes with, on the same layer stack, in the same
// run, and says where strata stands.
//
// # Contenders
//
//   - native: the merged tree copied into a plain directory, the physical
//     limit of the machine;
//   - overlayfs: kernel overlayfs with the layers as lowerdirs and an
//     upperdir and workdir, as docker's overlay2 driver mounts them;
//   - fuse-overlayfs: the same layers through fuse-overlayfs (skipped, with
//     the reason, when it is not installed);
//   - strata: the layers loaded as an image into a bench-private store and
//     mounted by a strata server in a child process (Serve, a mount session
//     of package session, as strata mount runs one), so that the workload
//     and the FUSE server do not share a Go runtime.
//
// # Data
//
// The main image is real by default (RealSpec, realdata.go): this
// machine's /usr/share as one layer, /usr/bin, /etc and a big file as a
// second, and a third that replaces, deletes (whiteouts) and hides (an
// opaque directory) some of what those hold, copied once with cp -a and
// tarred by GNU tar. The synthetic main image (--dataset synthetic) and the
// depth, import and disk images are generated:
//
// The dataset (Spec, dataset.go) is generated deterministically from a seed
// into the work directory (default /var/tmp/strata-bench): every layer as a
// directory in overlayfs format (whiteouts are 0/0 character devices, opaque
// directories carry trusted.overlay.opaque) and as an OCI tar (.wh. names),
// an OCI layout of the image, and the merged tree as a plain directory. A
// finished dataset is reused by later runs with the same Spec.
//
// # Measurements
//
// Workloads are the real tools in child processes (find, GNU ls -lR, tar,
// cp -a, dd), so that what the tools really ask of the file system shows
// (GNU ls's getxattr follows symlinks), beside Go code run in the harness
// process (the stat walk, ls -lR imitation, reads, creates). Every cell is measured Reps
// times, contenders interleaved and their order rotated from one repetition
// to the next so that drift on a shared machine spreads over all of them;
// a cell reports the median, the spread (min and max) and its ratio to
// native and to kernel overlayfs measured in the same run. Cold cells
// drop the page, dentry and inode caches (root only) before each
// repetition. Nothing here asserts absolute timings.
//
// The 1-minute load average is sampled every 2 s through the run; a row
// whose highest sample exceeds the cores is marked as run under foreign
// load, and UpdateResults refuses to record such a run unless told to mark
// it. With Config.Trace the strata server counts its FUSE requests by
// opcode, and the time it spent on them (from a request's arrival to its
// answer: the rest of a row's time is the kernel's, the round trips' and
// the workload's own), reported per run of each workload beside the
// timings. A row's
// baseline (native, or overlayfs where a plain directory does nothing
// comparable) never changes: when it fails, the row has no ratios.
//
// # Cleanup
//
// Every mount the harness makes is recorded and undone when Run returns,
// whatever the outcome, and when its context is cancelled (the CLI cancels
// it on SIGINT and SIGTERM). A strata server unmounts when its standard
// input closes, so it never outlives the harness; mounts left under the
// work directory by a killed run are detached at the start of the next.
package bench
