package bench

import (
	"slices"
	"testing"
)

func TestMerge(t *testing.T) {
	layers := []genLayer{
		{{path: "a", kind: 'd'}, {path: "a/x", kind: 'f'}, {path: "a/y", kind: 'f'}, {path: "b", kind: 'd'}, {path: "b/z", kind: 'f'}, {path: "c", kind: 'd'}, {path: "c/q", kind: 'f'}},
		{{path: "a", kind: 'd'}, {path: "a/x", kind: 'w'}, {path: "b", kind: 'd'}, {path: "b", kind: 'o'}, {path: "b/new", kind: 'f'}, {path: "c", kind: 'w'}},
		{{path: "a", kind: 'd'}, {path: "a/x", kind: 'f', mode: 0o600}},
	}
	m := merge(layers)
	var got []string
	for p := range m {
		got = append(got, p)
	}
	slices.Sort(got)
	want := []string{"a", "a/x", "a/y", "b", "b/new"}
	if !slices.Equal(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
	if m["a/x"].mode != 0o600 {
		t.Errorf("a/x comes from layer %+v, want the top one", m["a/x"])
	}
}

func TestSortLayer_OpaqueFirst(t *testing.T) {
	l := genLayer{{path: "d/f", kind: 'f'}, {path: "d", kind: 'o'}, {path: "d", kind: 'd'}, {path: "c", kind: 'd'}}
	sortLayer(l)
	var got []string
	for _, e := range l {
		got = append(got, e.path+string(e.kind))
	}
	if want := []string{"cd", "dd", "do", "d/ff"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

func TestMainLayers_Deterministic(t *testing.T) {
	s := tinySpec()
	a, bigA := mainLayers(s)
	b, bigB := mainLayers(s)
	if bigA != bigB || len(a) != len(b) {
		t.Fatal("two generations differ")
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			t.Fatalf("layer %d: %d and %d entries", i, len(a[i]), len(b[i]))
		}
		for j := range a[i] {
			if a[i][j].path != b[i][j].path || string(a[i][j].data) != string(b[i][j].data) {
				t.Fatalf("layer %d entry %d differs: %s", i, j, a[i][j].path)
			}
		}
	}
	var wh, op int
	for _, l := range a {
		for _, e := range l {
			switch e.kind {
			case 'w':
				wh++
			case 'o':
				op++
			}
		}
	}
	if wh == 0 || op != 1 {
		t.Errorf("%d whiteouts and %d opaque directories, want some and 1", wh, op)
	}
}
