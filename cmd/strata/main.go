// Command strata is the CLI of the strata layer store and union filesystem.
package main

import "os"

func main() {
	os.Exit(execute(os.Args[1:]))
}
