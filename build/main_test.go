package build

import (
	"os"
	"testing"

	"github.com/strata-dev/strata/internal/runctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	runctest.Finish()
	os.Exit(code)
}
