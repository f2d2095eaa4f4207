package main

import "fmt"

var decimalUnits = []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}

// humanSize formats bytes as docker does (go-units HumanSizeWithPrecision):
// decimal units, prec significant digits.
func humanSize(n int64, prec int) string {
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(decimalUnits)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.*g%s", prec, f, decimalUnits[i])
}
