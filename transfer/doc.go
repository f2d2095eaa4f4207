// Package transfer moves images between the store and the world outside it.
// Load stores the images an archive offers; Save writes stored images as an
// archive; Pull stores an image from a registry; Push writes a stored image
// to one. cmd/strata and bench call these and nothing below them.
//
// Every direction goes through one type, layerstore.ImageSource: an image's
// manifest and config with its layers by descriptor, each with a way to open
// its blob. Package imagefmt makes them of an archive and package
// transfer/registry of a remote image, for the same AddImage; Store.ImageSource
// makes one of a stored image, which Save hands to package export and Push to
// the registry client.
//
// transfer sits above layerstore, imagefmt, export and registry (imagefmt
// and export import layerstore for the type and its sentinel errors, so
// Load and Save cannot live in layerstore itself). It keeps no state and
// writes nothing of its own: crash safety is the store's (AddImage is all
// or nothing per image; a pull records its repo digest with the image, and
// its blob digests after) and export's; a push writes the manifest last.
package transfer
