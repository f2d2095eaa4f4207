package layerstore

// The bbolt schema. Every bucket name and key format is declared here.
//
//	v1/                               root bucket; a new layout gets a new root
//	  images/  <image ID>        -> JSON imageRecord (raw config and manifest kept verbatim)
//	  refs/    <name:tag>        -> image ID ("sha256:…")
//	  layers/  <diffID>/              one bucket per layer
//	             meta            -> JSON layerRecord
//	             tarsplit        -> the tar stream without file contents, zstd (tarsplit.go)
//	             e/  Key(path)   -> Entry.MarshalBinary (path is the key)
//	  trees/   <chainID>/             merged tree of a chain
//	             meta            -> JSON treeRecord: layers, entry count, NextIno,
//	                                and the tree file (<root>/trees/<hex>, by the
//	                                sha256 of its bytes; format in treefile.go)
//	  objects/ <digest>          -> uvarint size, uvarint refs (number of layers naming it)
//	  mounts/  <mount ID>        -> JSON MountRecord (a lease: keeps its chain from GC)
//	  buildcache/ <step key>     -> image ID: the image a build step made (buildcache.go)
//	  buildimages/ <image ID>    -> step key: every image a build step made (intermediate)
//	  holds/   <name:tag>        -> holder (holds.go: the tag's image stays until released)
//	  holders/ <kind><digest>\x00<holder> -> "" (holders.go: the images and leases
//	                                holding each layer and tree, the trees naming
//	                                each tree file, the tags and build cache keys
//	                                naming each image)
//	  schema                     -> the schema inside v1, in decimal: "3" (no key:
//	                                1, before holders/; 2 before holders/ had
//	                                the names of images)
//	  indexed-tx                 -> the ID of the last transaction that kept
//	                                holders/ (another writer's commit since makes
//	                                the next one rebuild it: store.go, update)
//
// Key(path) is parent + "\x00" + name (the root is "/"), so a directory's
// children are one contiguous, name-sorted key range. Trees of earlier
// versions kept their entries in trees/<chainID>/e/; such a tree counts as
// not stored (it is built again, as a file, when needed, and GC drops it).

// FormatVersion names the store's on-disk layout: the root bucket of
// meta.db. A new layout gets a new name.
const FormatVersion = "v1"

// schemaVersion is the layout inside the root bucket: 1 had no holders
// index, 2 had it without the names of images (tags, build cache keys), 3
// has them. Open brings an older store up to it, in one transaction (the
// index built anew), and refuses a newer one: a strata of schema 2 refuses
// a store of 3, so it cannot add tags the index would not know.
const schemaVersion = 3

var (
	bucketRoot    = []byte(FormatVersion)
	bucketImages  = []byte("images")
	bucketRefs    = []byte("refs")
	bucketLayers  = []byte("layers")
	bucketTrees   = []byte("trees")
	bucketObjects = []byte("objects")
	bucketMounts  = []byte("mounts")
	bucketCache   = []byte("buildcache")
	bucketBuilt   = []byte("buildimages")
	bucketHolds   = []byte("holds")
	bucketHolders = []byte("holders")
	keySchema     = []byte("schema")
	keyIndexedTx  = []byte("indexed-tx") // the last transaction that kept the holders index (store.go, update)

	keyMeta    = []byte("meta")
	bucketEnts = []byte("e")
)

var topBuckets = [][]byte{bucketImages, bucketRefs, bucketLayers, bucketTrees, bucketObjects, bucketMounts, bucketCache, bucketBuilt, bucketHolds, bucketHolders}
