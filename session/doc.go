// Package session owns the life of a mount of an image from a store: the
// seam that the CLI's mount commands, the benchmark harness, and the
// container, build and snapshotter features share.
//
// A Session takes a lease on the image (layerstore.AddMount, so GC and rmi
// keep what it reads), makes its top layer (the upper dir of package fs,
// under the store's mounts/<id>/upper), mounts the image's merged tree with
// fs.Mount, and serves until the mount ends. Close unmounts, deletes the top
// layer and then drops the lease, and returns every failure (errors.Join).
//
// A session started with Options.Keep keeps its top layer when its server
// stops (Close, or the server's death): the lease stays, marked as served by
// no one, GC leaves it alone, and Resume serves the same top layer again
// under the same mount ID. Only Remove deletes it. This is a stopped
// container that keeps its writable layer until it is removed.
//
// Other processes act on a mount through its lease: Find names it by
// mountpoint or ID, Unmount unmounts it and returns only when its server has
// deleted the top layer (or cleans up itself after a server that is gone),
// Reap detaches and cleans up a mount whose server died, Diff lists its
// changes and Commit turns them into an image. ParseMountinfo is the one
// reader of /proc/self/mountinfo.
//
// Many mounts of one image: each is a server process of its own (a fault
// takes down one mount, not every container of the node: "strata mount -d"
// starts strata-mount where it is installed beside strata, else strata
// itself, and foreground mounts and containers' roots are served by strata
// itself), and all of them map the image's one tree file read-only, so the tree is in memory once
// however many mount it; a server's own memory is the inodes the kernel
// looked up through it and what its top layer changed. A server killed
// (even with SIGKILL) leaves its mountpoint answering ENOTCONN and its
// lease, which "strata mounts" shows as stale: Unmount ("strata umount")
// or Reap detaches the mountpoint and drops the top layer and the lease
// ("strata gc" does the same for every dead server); the other mounts of the image go on untouched, and the tree
// file stays while any lease or image holds it. TrimMemory is for a process
// that serves mounts.
//
// Crash safety: the lease is recorded before the top layer exists and
// dropped after it is deleted, so a crash anywhere leaves at worst a lease
// whose server is gone, which check reports and GC (or Reap) cleans up.
package session
