package layerstore

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"
)

// A sparse map that does not describe the packed data read (wrong lengths,
// or the right lengths over other bytes) costs the layer its tar split; it
// never becomes ranges that would give back other bytes.
func TestSplitter_SparseMapMustMatchData(t *testing.T) {
	packed := bytes.Repeat([]byte("data"), 25) // 100 bytes as the stream holds them
	content := make([]byte, 1000)              // the expanded file
	copy(content[100:], packed[:60])
	copy(content[500:], packed[60:])
	right := []sparseFrag{{100, 60}, {500, 40}, {1000, 0}}
	sumOf := func(frags []sparseFrag) []byte {
		fh := &fragHasher{h: sha256.New(), frags: frags}
		fh.Write(content[:333]) // in pieces, as a reader gives them
		fh.Write(content[333:])
		return fh.h.Sum(nil)
	}
	d := sha([]byte("object"))
	for _, c := range []struct {
		name  string
		frags []sparseFrag
		sum   []byte
		split bool
	}{
		{"Right", right, sumOf(right), true},
		{"WrongLengths", []sparseFrag{{100, 50}, {500, 40}}, sumOf([]sparseFrag{{100, 50}, {500, 40}}), false},
		{"OtherBytes", []sparseFrag{{90, 60}, {500, 40}}, sumOf([]sparseFrag{{90, 60}, {500, 40}}), false},
		{"Overlapping", []sparseFrag{{100, 60}, {150, 40}}, sumOf(right), false},
		{"PastTheEnd", []sparseFrag{{100, 60}, {990, 40}}, sumOf(right), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp := newSplitter(bytes.NewReader(append([]byte("header"), packed...)))
			io.ReadFull(sp, make([]byte, 6))
			sp.beginSparse()
			if _, err := io.ReadFull(sp, make([]byte, len(packed))); err != nil {
				t.Fatal(err)
			}
			sp.endSparse(d, int64(len(content)), c.frags, c.sum)
			blob, err := sp.finish()
			if err != nil {
				t.Fatal(err)
			}
			if (blob != nil) != c.split {
				t.Fatalf("tar split kept: %v, want %v", blob != nil, c.split)
			}
			if !c.split {
				return
			}
			segs, err := decodeTarSplit(blob)
			if err != nil {
				t.Fatal(err)
			}
			var got []sparseFrag
			for _, s := range segs {
				if s.kind == segRange {
					if s.object != d || s.size != int64(len(content)) {
						t.Errorf("range of %s (%d bytes), want %s (%d)", s.object, s.size, d, len(content))
					}
					got = append(got, sparseFrag{s.off, s.n})
				}
			}
			if len(got) != 2 || got[0] != right[0] || got[1] != right[1] {
				t.Errorf("ranges %v, want %v without the empty one", got, right[:2])
			}
		})
	}
}
