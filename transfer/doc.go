// Package transfer moves images between the store and the world outside it.
// Load stores the images an archive (or, later, a registry) offers; Save
// writes stored images as an archive. cmd/strata, bench and the registry
// code call these two and nothing below them.
//
// Both directions go through one type, layerstore.ImageSource: an image's
// manifest and config with its layers by descriptor, each with a way to open
// its blob. package imagefmt makes them of an archive and a registry client
// makes them of a remote image, for Load; Store.ImageSource makes one of a
// stored image, which Save hands to package export and a push reads the same
// way.
//
// transfer sits above layerstore, imagefmt and export (imagefmt and export
// import layerstore for the type and its sentinel errors, so Load and Save
// cannot live in layerstore itself). It keeps no state and writes nothing of
// its own: crash safety is the store's (AddImage is all or nothing per
// image) and export's.
package transfer
