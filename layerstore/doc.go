// Package layerstore is strata's content-addressed store of image layers.
//
// It owns everything on disk under a store root:
//
//	<root>/meta.db        bbolt: every piece of metadata (see schema.go for buckets and keys)
//	<root>/objects/ab/…   regular-file contents by sha256, read-only, written once
//	<root>/trees/<hex>    merged trees of chains, one file each by sha256, read-only,
//	                      written once and memory-mapped by mounts (treefile.go)
//	<root>/tmp/           staging on the same filesystem, so rename is atomic
//	<root>/downloads/<hex> what arrived of a blob a pull is streaming or left unfinished,
//	                      for the next pull to resume (downloads.go); GC removes them
//	<root>/mounts/<id>/   top layers of mounts, held by their leases (owned by package
//	                      session; the store names it (MountDir), measures it
//	                      (MountUsage) and removes it with the lease or by GC)
//	<root>/lock           flock: shared by every writer of objects, exclusive for gc
//
// A layer is stored as its entries (one bbolt key per tar entry, keyed so that a
// directory's children are one contiguous key range), the objects its regular
// files name, and its tar split (the tar without file contents, see
// // tarsplit.go), from which LayerTar gives back the imported tar byte for
// byte. The merged tree of a chain of layers (what a mount shows) is built
// once per chainID from the nearest stored ancestor tree and kept as a tree
// file: fixed-size records breadth first (a directory's children one
// sorted run, found by binary search) and a string table, content-addressed
// like an object. A mount maps it read-only and decodes nothing up front,
// so every mount of a chain shares one copy in the page cache, and mounting
// costs the same for 100 entries or 100,000.
//
// Layers are applied as docker applies them, whatever path they come in by
// (import of a rootfs tarball, load, pull, commit): a whiteout ".wh.X" deletes
// X of the lower layers (a whiteout of a name that is not there is ignored);
// ".wh..wh..opq" makes its directory hide what the lower layers put in it, at
// the root too. Neither hides anything of its own layer, so in a one-layer
// image (what import makes) they delete nothing and only vanish. Within one
// layer a later entry replaces an earlier one of the same name, and an entry
// that is not a directory replaces a directory with everything below it;
// hard links (to an earlier regular file of the same layer only) keep the
// content their target had when they were made. Symlinks
// in an entry's or a marker's parent path are followed inside the root, as
// docker's FollowSymlinkInScope does (for a marker, the layer's own entries
// first: docker meets them before the markers under them). A name longer than 255 bytes is refused.
//
// Images come and go as ImageSource values (source.go): a manifest, a config
// and layers by descriptor, each with a way to open its blob. Package
// imagefmt reads archives into them, package export writes them out, and
// package transfer moves them between the two and the store; those import
// layerstore for that type, for the reference grammar (refs.go: every name
// an image is given goes through ParseTag) and for the sentinel errors
// (errors.go), and layerstore imports none of them.
//
// Crash guarantees: objects are written to tmp/, flushed with syncfs and renamed
// into objects/ (and flushed again) before the bbolt transaction that names them
// commits; a tree file is written to tmp/, fsynced, renamed into trees/ and
// the directory fsynced before the transaction that records it. A tree file
// is never changed and only GC or a removal deletes it, once no record names
// it; a mount that maps it keeps its pages after that, until it ends.
// The holders index (holders.go: who holds each layer and tree, which tags
// and build cache keys name each image) changes in the transactions that
// add and delete images, leases, trees, tags and cache entries, so a
// removal finds what it frees, and a lookup an image's tags, without
// reading the rest of the store; Open builds it for a store of an earlier
// schema, in one transaction.
// A mount's lease is made with its directory under mounts/, in one
// transaction (AddMountDir; check reports a kept lease without it: its top
// layer was lost), and dropped before it is deleted (RemoveMount), and GC (or RemoveMountDir) takes a
// directory for one without a lease only in a transaction that finds none,
// moving it into tmp/ there and deleting it after, so a mount being made
// meanwhile keeps its directory, and a lease never names a directory half
// deleted.
// A kill at any point leaves at worst unreferenced files in tmp/, objects/
// or trees/, and layers and trees that no image or lease holds, which Check
// reports as garbage and GC removes. Every digest is
// verified on ingest; a mismatch fails the import and stores nothing, as does
// a layer whose tar goes on for more than 1 MiB past its end-of-archive
// marker (which docker would inflate to its end, however far).
//
// Concurrency: bbolt holds an exclusive flock on meta.db while a Store is open,
// so commands open the store only for as long as they need it; a second opener
// waits up to Options.LockTimeout and then fails with ErrLocked. Imports hold
// <root>/lock shared while they write objects outside a transaction; image
// removal, prune and GC take it exclusively, so they never delete an object or
// layer an import is about to commit. Check holds it shared, so what it reads
// of objects/ matches the metadata it read.
//
// Users: what keeps its own records outside the store (strata's containers)
// names the images it uses through Options.Users, which image removal and
// prune read under the exclusive lock; such a user resolves an image and
// records its use inside Use (the lock shared), so no removal falls
// between the two, and no kill leaves a recorded use unheld.
package layerstore
