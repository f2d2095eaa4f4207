package bench

import (
	"math"
	"slices"
)

// Stats summarize the samples of one cell.
type Stats struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Spread is half the min..max range relative to the median: the cell
	// reads "median ±Spread". 0 for a single sample or a zero median.
	Spread float64 `json:"spread"`
}

// Summarize computes the statistics of samples. It does not modify them.
func Summarize(samples []float64) Stats {
	if len(samples) == 0 {
		return Stats{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	st := Stats{N: len(s), Median: Median(s), Min: s[0], Max: s[len(s)-1]}
	if len(s) > 1 && st.Median != 0 {
		st.Spread = (st.Max - st.Min) / 2 / math.Abs(st.Median)
	}
	return st
}

// Median is the middle of samples, or the mean of the two middle values
// for an even count. NaN for no samples.
func Median(samples []float64) float64 {
	n := len(samples)
	if n == 0 {
		return math.NaN()
	}
	s := samples
	if !slices.IsSorted(s) {
		s = slices.Clone(samples)
		slices.Sort(s)
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ratio is a/b, NaN when either is missing or b is zero.
func Ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}
