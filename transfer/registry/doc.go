// Package registry is strata's client of OCI distribution registries
// (docker's "registry v2" protocol): it reads a remote image as a
// layerstore.ImageSource for the store's ingest, the same type an archive
// gives, and writes a stored image's ImageSource to a repository. It lives
// under transfer because transfer is its only caller (transfer.Pull and
// transfer.Push); it is a package of its own because it is the only code
// that speaks HTTP and holds credentials, and keeps oras-go out of
// layerstore's import graph.
//
// The protocol is oras.land/oras-go/v2's registry/remote: its import graph
// is go-digest, image-spec and x/sync, where go-containerregistry brings
// docker/cli, moby's client and oauth2; it reads blobs as io.Seekers over
// HTTP Range (what resuming an interrupted download needs), mounts blobs
// across repositories, handles basic and bearer-token auth, and keeps
// credentials in docker's config.json with docker's credential helpers
// (credsStore, credHelpers), so docker login and strata login share them.
// Names are normalised as docker does by github.com/distribution/reference.
//
// Transport: a loopback registry may be plain HTTP (HTTPS is tried first,
// verified); any other registry is HTTPS, verified against the system roots
// and the CA certificates of docker's /etc/docker/certs.d/HOST:PORT/*.crt
// and strata's CONFIG/certs.d/HOST:PORT/*.crt (with client certificates as
// *.cert and *.key pairs), unless it is named insecure (Options.Insecure,
// or "insecure-registries" in CONFIG/registries.json), which allows plain
// HTTP and unverified TLS, as docker's --insecure-registry does.
//
// On disk it writes docker's config.json (mode 0600, through a temporary
// file and a rename, by oras-go) on Login and Logout, and during a push each
// layer being uploaded, compressed, in a file without a name in
// PushOptions.TmpDir (the store's tmp/: the upload must name the blob's
// digest before its first byte), gone when the push ends or is killed. A pull writes only through the store's AddImage
// (all or nothing); a push writes only to the registry, manifest last, so an
// interrupted push leaves at most unreferenced blobs there, as docker's
// does.
package registry
