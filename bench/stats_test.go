package bench

import (
	"math"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want float64
	}{
		{"one", []float64{3}, 3},
		{"odd unsorted", []float64{5, 1, 3}, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5},
		{"outlier", []float64{1, 1, 1, 100, 1}, 1},
		{"equal", []float64{2, 2}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if got := Median(in); got != tc.want {
				t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("Median reordered its input: %v", in)
				}
			}
		})
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Stats
	}{
		{"one", []float64{2}, Stats{N: 1, Median: 2, Min: 2, Max: 2}},
		{"spread", []float64{1.2, 1.0, 0.8}, Stats{N: 3, Median: 1.0, Min: 0.8, Max: 1.2, Spread: 0.2}},
		{"even", []float64{4, 2, 6, 8}, Stats{N: 4, Median: 5, Min: 2, Max: 8, Spread: 0.6}},
		{"zero median", []float64{0, 0, 1}, Stats{N: 3, Median: 0, Min: 0, Max: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Summarize(tc.in)
			if got.N != tc.want.N || got.Median != tc.want.Median || got.Min != tc.want.Min || got.Max != tc.want.Max ||
				math.Abs(got.Spread-tc.want.Spread) > 1e-12 {
				t.Errorf("Summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
	if st := Summarize(nil); st.N != 0 || !math.IsNaN(st.Median) {
		t.Errorf("Summarize(nil) = %+v", st)
	}
}

func TestRatio(t *testing.T) {
	if got := Ratio(3, 2); got != 1.5 {
		t.Errorf("Ratio(3, 2) = %v", got)
	}
	for _, c := range [][2]float64{{1, 0}, {math.NaN(), 1}, {1, math.NaN()}} {
		if got := Ratio(c[0], c[1]); !math.IsNaN(got) {
			t.Errorf("Ratio(%v, %v) = %v, want NaN", c[0], c[1], got)
		}
	}
}

func TestRotate(t *testing.T) {
	xs := []int{0, 1, 2}
	for k, want := range [][]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 1, 2}} {
		got := rotate(xs, k)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("rotate(%v, %d) = %v, want %v", xs, k, got, want)
			}
		}
	}
	if xs[0] != 0 || xs[1] != 1 {
		t.Fatalf("rotate changed its input: %v", xs)
	}
}
