package mountserver

import (
	"os"
	"path/filepath"
)

// Binary is the file name of the small mount server, installed beside
// strata ("go install ./cmd/..." installs both).
const Binary = "strata-mount"

// Find returns the path of strata-mount beside the running executable, or
// "" when it is not there (the caller then serves with strata itself).
// Only beside: one found in PATH may be another version's, whose flags
// differ.
func Find() string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(self), Binary)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p
	}
	return ""
}
