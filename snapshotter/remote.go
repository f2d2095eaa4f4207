package snapshotter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/strata-dev/strata/layerstore"
)

// labelTarget names the committed snapshot containerd is about to unpack
// into (its chain ID): the remote-snapshot handshake of containerd's
// unpacker.
const labelTarget = "containerd.io/snapshot.ref"

// stored answers Prepare of a snapshot whose target chain strata already
// stores (an image loaded with strata load, say): it makes the committed
// snapshot key of that chain on parent, with labels, out of the stored
// layers, and reports true; containerd, told the snapshot exists, neither
// fetches nor applies the layer. false when strata has no such chain.
func (s *Snapshotter) stored(ctx context.Context, key, parent string, labels map[string]string) (bool, error) {
	target := digest.Digest(labels[labelTarget])
	if target.Validate() != nil {
		return false, nil
	}
	if _, err := s.get(key); err == nil {
		return false, nil // create reports it
	}
	var below []digest.Digest
	if parent != "" {
		p, err := s.get(parent)
		if err != nil || p.Kind != KindCommitted {
			return false, nil // create reports it
		}
		img, err := s.st.ResolveImage(p.Image.String())
		if err != nil {
			return false, err
		}
		below = img.Layers
	}
	imgs, err := s.st.Images()
	if err != nil {
		return false, err
	}
	var chain []digest.Digest
	var sizes []int64
	for _, img := range imgs {
		n := len(below)
		if len(img.Layers) > n && slices.Equal(img.Layers[:n], below) && identity.ChainID(img.Layers[:n+1]) == target {
			chain, sizes = img.Layers[:n+1], img.LayerSizes[:n+1]
			break
		}
	}
	if chain == nil {
		return false, nil
	}
	// An image of exactly that chain: the stored layers, no new one.
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}}
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: chain}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return false, err
	}
	base := layerstore.Image{ConfigRaw: raw, Layers: chain, LayerSizes: sizes}
	if err := s.st.Hold(tagOf(key), holder); err != nil {
		return false, err
	}
	img, err := s.st.NewImage(ctx, layerstore.NewImageOptions{Base: &base, Names: []string{tagOf(key)}})
	if err != nil {
		return false, errors.Join(err, s.st.Release(tagOf(key)))
	}
	now := time.Now().UTC()
	r := &record{Info: Info{Name: key, Parent: parent, Kind: KindCommitted, Labels: labels, Created: now, Updated: now}, Image: img.ID}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if snapshots(tx).Get([]byte(key)) != nil {
			return fmt.Errorf("snapshot %q: %w", key, layerstore.ErrExists)
		}
		return putRecord(tx, r)
	})
	return err == nil, err
}
