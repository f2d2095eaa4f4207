// Package snapshotter serves containerd's snapshots API
// (containerd.services.snapshots.v1.Snapshots) over a strata store, so that
// containerd loads strata as a proxy snapshotter plugin and keeps its image
// layers in the store.
//
// What it owns, under <store>/snapshotter/:
//
//	meta.db     bbolt: bucket "v1" > "snapshots": name -> JSON record (kind,
//	            parent, labels, times, the image or mount that holds it)
//	mnt/<id>/   mountpoints of the snapshots' strata mounts
//
// A committed snapshot is a strata image (the parent's layers plus one new
// layer, content-addressed, its files deduplicated with every other image),
// tagged "containerd-snapshot:<hash of its name>" so that prune keeps it
// and "strata images" shows what containerd holds. An active snapshot is a
// session mount of its parent's image with a kept top layer
// (session.Options.Keep); a view is a read-only session mount. Mounts hands
// containerd a bind mount of that FUSE mount. Commit writes the top layer as
// a layer through session.Commit (whiteouts and all) and removes the mount.
//
// A Prepare whose target chain (label containerd.io/snapshot.ref) strata
// already stores, from strata load or pull, is answered ErrAlreadyExists
// with the committed snapshot made from the stored layers: containerd's
// unpacker (pull) then neither fetches nor applies the layer.
//
// Crash safety: the record is written before the mount (Prepare) and
// deleted before the image (Remove); a commit stores the tagged image, then
// swaps the records in one transaction, answers, and then removes the
// mount (Close waits for that). Open
// resumes every active snapshot's kept top layer, remounts views, and
// removes leases and tags that no record names, so after a kill at any
// point the store and the records agree again.
package snapshotter
