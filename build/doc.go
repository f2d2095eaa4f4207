// Package build builds images from a Dockerfile, as docker build (BuildKit)
// does: `strata build`.
//
// It parses with BuildKit's own parser and instruction packages, so what
// docker accepts and refuses, strata does too, and gives every instruction
// docker's semantics and puts its result where docker puts it in the
// image config. Each RUN runs in a container (package container, the
// runtime strata run uses) whose root is a mount session of the image so
// far; the mount's top layer becomes the step's layer through the commit
// path (session.Commit). COPY and ADD write their layer as a tar stream of
// the selected files straight from the context (or from another stage or
// image), without a mount. One layer per RUN, COPY and ADD, and per WORKDIR
// that makes its directory; a step that changes no file, and every other
// instruction, adds a history entry with empty_layer. History created_by
// and comment are BuildKit's.
//
// The cache: every step that stores an image is keyed by a chain: the base
// image's ID, then each instruction as expanded (so ENV, ARG and build args
// in use are in it), RUN's environment and network, and for COPY and ADD a
// checksum of the selected files' contents and metadata (not their mtimes).
// The key names the image the step made, in the store's build cache bucket,
// written in the transaction that stores the image (NewImageOptions.CacheKey):
// a crash leaves either both or neither, and a step's mount is a lease that
// check reports and GC clears when its server is gone. A cached
// step costs no disk of its own: it is the image, with the layers, the store
// already has. Images that only the cache names are intermediate: strata
// images hides them unless -a, and image prune or builder prune drop them,
// and their cache entries with them (in the same transaction).
//
// A RUN's mount is at os.TempDir()/strata-build-*/root (a 0700 directory,
// so setuid programs work inside the container and nowhere else), with an
// owner file naming the build's process, the container and the store. A
// build killed outright (SIGKILL) leaves the mount's lease (check reports
// it, gc clears it), the directory, and the container running (runc's
// foreground run has no shim to take it down); the next build of the store
// finds the owner gone and kills and deletes the container, reaps the lease
// and removes the directory (orphans.go).
//
// A failing step stores nothing of its own: its mount is closed (top layer
// and lease gone) and the error names the Dockerfile, line and step, with a
// RUN's exit status and last lines of output; the steps before it stay
// cached.
package build
