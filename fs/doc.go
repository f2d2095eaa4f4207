// Package fs is strata's union file system: a FUSE mount that shows the
// merged tree of an image's layers (a *layerstore.Tree) and keeps every
// change in an ephemeral upper directory.
//
// # Read side
//
// Lookups, attributes and directory listings of everything that was not
// changed come from the tree (a file the store maps, shared by every mount
// of the image: a node keeps only the entry it was looked up as), so their
// cost does not depend on how many layers made the image. The mount holds
// the tree until it ends; the caller closes it after Wait. Lower entries never change, so the kernel may
// keep their entries, attributes, negative lookups and directory listings
// for a long time (FOPEN_CACHE_DIR, readdirplus); whatever a change touches
// is changed through the kernel, which invalidates its own caches. The
// contents of a regular file come from its object (Options.Objects), opened
// O_RDONLY and nothing else. On a read-only mount, read-only opens of lower
// files of 1 MiB or more use FUSE passthrough where the kernel offers it
// (their page cache is then the object's, shared by every mount and every
// file with that content); other reads go through the server with
// FOPEN_KEEP_CACHE. A missing or short object makes that file fail with
// EIO and logs the digest.
//
// Memory: node IDs are inode numbers, and the kernel's inodes of pure lower
// entries (no upper copy; hard-linked files excepted) are raw nodes: rawFS
// answers their lookups, attributes, links, xattrs and listings from the
// tree and counts the kernel's lookups in a table of 8 bytes per inode
// number, so a walk makes no go-fuse Inode per entry. A read-only open of
// a raw regular file gets a handle of rawFS's own on its object, and the
// node stays raw (rawfile.go). Anything else on a raw node (an open that
// may write, a change, a create in a directory) first promotes it to an
// Inode of go-fuse's bridge by a lookup of its tree path, its parents
// first (rawnode.go).
//
// Kernel caches: the mount answers the first OPENDIR with ENOSYS, so the
// kernel sends no OPENDIR or RELEASEDIR again and caches every listing
// (rawfs.go). A READDIRPLUS carries no attributes for children the kernel
// holds already (node ID 0), so re-reading a listing does not make the
// kernel forget their cached POSIX ACLs. The kernel keeps no cache of other
// xattrs for FUSE; a mount whose image has no SELinux labels answers
// EOPNOTSUPP for a missing security.selinux (not ENODATA), as a file system
// without label support does, and tools like ls -l stop asking for every
// entry (union.go, noXattr). Read-only handles open their object at the
// first read that needs one, so an open served from the page cache costs
// no open(2) of the object.
//
// A writable mount has one of two kernel paths for the top layer's data (the
// kernel offers passthrough or the writeback cache on a connection, not
// both: process_init_reply in fs/fuse/inode.c). With Options.Writeback the
// kernel caches writes and owns sizes and modification times of regular
// files, as for a local file system; writes reach the upper dir when the
// kernel writes them back, and Sync (and SyncMount from another process)
// waits for that before the upper dir is read. With Options.Passthrough
// instead, a top-layer file with data of its own passes through to its
// upper file, so the kernel reads and writes it as overlayfs would, with no
// request to the server (iomode.go); lower files and metacopies are read
// through the server.
//
// Passthrough and objects: the kernel opens a passthrough file's backing file
// anew with the flags of the FUSE open and the credentials of this server, and
// go-fuse hands a node's backing ID to every later open of it that can pass
// through, so a write handle given the backing id of an object would write
// into the object. Lower files therefore pass through only on read-only
// mounts, where nothing opens for writing; on a writable mount the only
// backing files are upper files. No writer meets ETXTBSY on either: the
// kernel keeps an inode with passthrough opens from any open that is not
// passthrough (and the other way round), which the server avoids by
// counting each node's opens by kind (iomode.go). A read-only handle opened
// before a copy-up reads the upper file afterwards, so it sees later writes.
//
// # Write side and the upper directory format
//
// Options.Upper mirrors the merged tree for every path that changed, like an
// overlayfs upper layer. Its metadata lives in extended attributes named
// XattrPrefix + name (trusted.strata.*, so a writable mount needs a root
// server; read-only mounts do not). These names are reserved: the mount
// neither shows nor accepts them.
//
//   - Whiteout (a lower entry was deleted): a character device 0/0 carrying
//     the xattr "whiteout" (value "y"). A character device 0/0 without it is
//     a device node someone made.
//   - Opaque directory (lower entries of that path no longer show through):
//     a directory carrying the xattr "opaque" (value "y"). A directory that
//     is removed and made again is opaque, and so is a renamed lower
//     directory, which is copied up whole (metadata only, see below) before
//     it moves, so a rename never fails with EXDEV.
//   - Metacopy (a lower file whose data is still in its object): a regular
//     file with the owner, mode, times and xattrs the mount shows, carrying
//     the xattr "metacopy" whose value is the digest of the object. Its
//     bytes below the object's size are the object's (the upper file has
//     holes there); bytes beyond, appended since, are the upper file's own.
//     Metadata changes (chmod, chown, utimes, xattrs), opens for writing and
//     appends make a metacopy; the data is copied (FICLONE, else
//     copy_file_range of the data extents) only by the first write,
//     fallocate or truncation below the object's end, after which the xattr
//     is removed. Readers of an upper dir read files with OpenUpperFile.
//   - Labels: the upper root carries the xattr "labels" (value "y") once an
//     SELinux label was set through a mount, so that a mount resuming the
//     upper dir answers ENODATA, not EOPNOTSUPP, to a missing one (noXattr).
//   - Everything else is a plain file, directory, symlink, device or fifo
//     with its real attributes. Hard links are hard links: the first change
//     to any name of a lower hard-link group copies up every name of the
//     group and links them, so the group stays one inode.
//
// A directory of the upper merges the lower directory of the same path
// unless it or one of its ancestors is opaque. Copy-up keeps the mtime of
// the directories it creates entries in, so a directory that only holds
// copied-up entries shows unchanged.
//
// The server, Diff and WriteLayer reach the upper dir only through
// descriptors (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, the *at
// calls, /proc/self/fd for what takes no descriptor), never through
// absolute paths: a path in the mount may be as long as the kernel allows
// (PATH_MAX counts from the working directory, not from the upper dir), and
// no symlink in the upper dir leads out of it. A mount keeps the upper dir
// and at most 32 of its directories open between requests; Diff and
// WriteLayer hold one descriptor per level of the directory they are in.
// Names longer than 255 bytes fail with ENAMETOOLONG, as on the upper file
// system.
//
// Diff and WriteLayer read an upper dir with this format from any process,
// while the mount is live or after it ended. A later mount of the same tree
// takes an upper dir up again with Options.Resume (a server restarted over
// a kept top layer): it rebuilds what a mount keeps in memory from these
// markers (resume.go). Inode numbers of lower entries
// are Entry.Ino (stable across mounts of the same tree); new files get
// numbers from Tree.NextIno up, stable for the life of the mount.
//
// # Guarantees
//
// The upper dir is ephemeral: nothing is fsynced for crash safety, and the
// caller deletes it after unmounting. Objects are never opened for writing,
// linked, renamed or changed in any way. File locks (flock and POSIX) are
// kept by the kernel, which has the right owner semantics for a local file
// system and keeps them across copy-up. POSIX ACLs are checked and cached by
// the kernel (FUSE_POSIX_ACL); a directory's default ACL is not applied to
// new entries.
//
// Concurrency: changes to the upper dir's namespace (create, unlink, rename,
// copy-up of metadata) are serialized by one lock of the mount; lookups,
// listings and attribute reads share it; reads and writes of open files take
// none, and copying a file's data at its first open for writing holds only
// that file. An upper inode that loses its name (unlinked, replaced by a
// rename, made with O_TMPFILE) while the kernel knows it stays open (O_PATH)
// until the kernel forgets it, as the inode of a local file system stays
// while anything refers to it: requests for it (a handle opened before
// copy-up, an O_PATH descriptor, a working directory) use that descriptor or
// one of its open handles', held (counted) while in use; the table of them
// is locked only to take one, never across a system call.
//
// Long-lived servers: a mount keeps no entry for an upper inode that is
// gone (no name left, and the kernel forgot it), so its memory follows what
// the mount holds, not what it ever made; and a mount that ends, unmounted
// or with its connection aborted (no RELEASE comes for the files still
// open then), closes every descriptor it held, so a process that serves
// many mounts one after another keeps nothing of those that ended.
package fs
